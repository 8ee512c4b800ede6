# The real BAGEL pieces -- the Qwen2 Mixture-of-Transformers over
# transformers' blocks, transformers SiglipVisionModel, the MLP connector, a
# FLUX-shaped diffusers AutoencoderKL (16 -> 4 latent channels, 2 x 2
# patches), the timestep embedder and the flow-matching generator -- at a
# tiny random size, with a tokenizer built in code: runs anywhere,
# downloads nothing. 32 px images: 16 ViT tokens (patch 8) and an 8 x 8
# grid of latent tokens.
model = dict(
    type='RecAModel',
    umm=dict(
        type='BagelUMM',
        llm=dict(
            vocab_size=1024, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512,
            tie_word_embeddings=False, qk_norm=True),
        # The whole SigLIP, as vit_config.json; vit_select_layer=-2 keeps
        # all but its last layer.
        vit=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=2, patch_size=8, image_size=64,
            hidden_act='gelu_pytorch_tanh', layer_norm_eps=1e-6),
        vae=dict(
            in_channels=3, out_channels=3,
            down_block_types=['DownEncoderBlock2D'] * 2,
            up_block_types=['UpDecoderBlock2D'] * 2,
            block_out_channels=[16, 32], layers_per_block=1,
            latent_channels=4, norm_num_groups=8, sample_size=32,
            scaling_factor=0.3611, shift_factor=0.1159,
            use_quant_conv=False, use_post_quant_conv=False),
        tokenizer=dict(type='BagelDemoTokenizer', vocab_size=1024),
        image_size=32,
        vit_max_num_patch_per_side=8,
        max_latent_size=8,
        frozen=['vae', 'vit', 'connector'],
        freeze_und=True,
        weights_dtype='float32',
        trainable_dtype='float32',
        # Fewer sampling steps than the authors' 50: sample grids of a tiny
        # model in seconds.
        flow=dict(type='FlowMatchingGenerator',
                  timestep_sampling='logit_normal', shift=1.0,
                  scheduler='euler', sampling_shift=3.0,
                  sigma_grid='uniform', num_inference_steps=5,
                  guidance_scale=4.0, cfg_renorm='global')),
    objectives=dict(
        recon=dict(type='ReconstructionAlignment', weight=1.0,
                   generic_prob=0.1),
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)
