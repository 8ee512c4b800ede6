# The real OpenUni pieces -- transformers InternVL (InternViT, pixel shuffle,
# mlp1, Qwen2 LLM), a SiglipEncoder connector, diffusers SanaTransformer2DModel
# and AutoencoderDC (f4) -- at a tiny random size, with a tokenizer built in
# code: runs anywhere, downloads nothing. 32 px images: 16 understanding
# tokens (8 x 8 patches, pixel shuffle 0.5), an 8 x 8 latent grid, 16
# meta-queries.
custom_imports = dict(imports=['projects.openuni.openuni'],
                      allow_failed_imports=False)
model = dict(
    type='RecAModel',
    umm=dict(
        type='OpenUniUMM',
        config=dict(
            internvl=dict(
                vision_config=dict(
                    hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=64,
                    image_size=[32, 32], patch_size=[4, 4]),
                text_config=dict(
                    model_type='qwen2', vocab_size=1024, hidden_size=64,
                    intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=512, tie_word_embeddings=False),
                image_token_id=5, image_seq_length=16,
                downsample_ratio=0.5),
            sana=dict(
                in_channels=4, out_channels=4, num_attention_heads=2,
                attention_head_dim=16, num_layers=2,
                num_cross_attention_heads=2, cross_attention_head_dim=16,
                cross_attention_dim=32, caption_channels=48, mlp_ratio=2.0,
                sample_size=8, patch_size=1),
            dcae=dict(
                in_channels=3, latent_channels=4, attention_head_dim=8,
                encoder_block_types='ResBlock',
                decoder_block_types='ResBlock',
                encoder_block_out_channels=[8, 16, 16],
                decoder_block_out_channels=[8, 16, 16],
                encoder_layers_per_block=[1, 1, 1],
                decoder_layers_per_block=[1, 1, 1],
                encoder_qkv_multiscales=[[], [], []],
                decoder_qkv_multiscales=[[], [], []],
                scaling_factor=1.0),
            connector=dict(hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=4)),
        tokenizer=dict(type='InternVLDemoTokenizer', vocab_size=1024),
        num_queries=16,
        image_size=32,
        und_size=32,
        weights_dtype='float32',
        trainable_dtype='float32',
        # Fewer sampling steps than the authors' 20: grids in seconds.
        generator=dict(type='FlowMatchingGenerator', num_inference_steps=8,
                       guidance_scale=4.5)),
    objectives=dict(
        recon=dict(type='ReconstructionAlignment', weight=1.0),
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)
