# The real Harmon pieces -- transformers Qwen2, diffusers AutoencoderKL, the
# MAR generator with its diffusion head -- at a tiny random size, with a
# tokenizer built in code: runs anywhere, downloads nothing. 32 px images
# give an 8 x 8 latent grid: 64 tokens plus 4 buffer tokens.
model = dict(
    type='RecAModel',
    umm=dict(
        type='HarmonUMM',
        config=dict(
            vocab_size=1024, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512,
            tie_word_embeddings=True),
        vae=dict(
            in_channels=3, out_channels=3,
            down_block_types=['DownEncoderBlock2D', 'DownEncoderBlock2D',
                              'AttnDownEncoderBlock2D'],
            up_block_types=['UpDecoderBlock2D'] * 3,
            block_out_channels=[16, 16, 32], layers_per_block=1,
            latent_channels=4, norm_num_groups=8, sample_size=32),
        tokenizer=dict(type='QwenDemoTokenizer', vocab_size=1024),
        image_size=32,
        frozen=['vae'],
        weights_dtype='float32',
        trainable_dtype='float32',
        mar=dict(
            type='MaskedAutoregressiveGenerator', encoder_dim=64,
            encoder_depth=2, encoder_heads=4, decoder_dim=64,
            decoder_depth=2, decoder_heads=4, pos_embed_grid=8,
            buffer_size=4,
            # Fewer sampling steps than the authors' 64 x 100: sample grids
            # of a tiny model in seconds.
            num_iter=8, head=dict(width=64, depth=2, num_sampling_steps=20))),
    objectives=dict(
        recon=dict(type='ReconstructionAlignment', weight=1.0),
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)
