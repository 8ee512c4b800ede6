# The tiny Harmon's architecture, shared by the pretraining and the study's
# configs (`dict(_base_.harmon_toy_umm, type='HarmonUMM', ...)`): the real
# pieces of HarmonUMM -- transformers Qwen2, the MAR encoder and decoder
# with their per-token diffusion head, Harmon's projections and chat
# template -- at toy size. The LLM's sizes are in pretrain.py (config=) and,
# after it, in the checkpoint's config.json.
harmon_toy_umm = dict(
    # Which file names the weights take (harmon_0.5b.*); the sizes are the
    # toy's own.
    variant='0.5b',
    # The AutoencoderKL HarmonUMM always builds, at the smallest size
    # diffusers allows: PatchLatentTokenizer keeps it but never runs it.
    vae=dict(
        in_channels=3, out_channels=3,
        down_block_types=['DownEncoderBlock2D'],
        up_block_types=['UpDecoderBlock2D'], block_out_channels=[8],
        layers_per_block=1, latent_channels=1, norm_num_groups=8,
        sample_size=64),
    gen_tokenizer=dict(type='PatchLatentTokenizer', latent_channels=16),
    image_size=64,
    # The RecA recipe for Harmon freezes the VAE only.
    frozen=['vae'],
    weights_dtype='float32',
    trainable_dtype='float32',
    # MAR-B's layout at toy width; a 4 x 4 latent grid (16 tokens) and 4
    # buffer tokens, as harmon_tiny. Sampling: 4 MAR steps for 16 tokens,
    # Harmon's guidance scale 3, and 500 of the 1000 diffusion steps: MAR's
    # respacing to 100 (or the 25 pretraining validated with) diverges on
    # this tiny head (sampled latents of norm ~1000, every slot decoded as
    # some object), 500 and 1000 do not (23 of 512 sampled latents off the
    # table either way). Chosen on the pretrained model's own samples,
    # before any study run (projects/harmon_toy/README.md).
    mar=dict(
        type='MaskedAutoregressiveGenerator', encoder_dim=128,
        encoder_depth=2, encoder_heads=4, decoder_dim=128, decoder_depth=2,
        decoder_heads=4, pos_embed_grid=4, buffer_size=4, num_iter=4,
        guidance_scale=3.0,
        head=dict(width=128, depth=3, num_sampling_steps=500)))
