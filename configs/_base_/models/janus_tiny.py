# The real transformers Janus classes in a tiny random configuration, with a
# tokenizer built in code: runs anywhere, downloads nothing.
model = dict(
    type='RecAModel',
    umm=dict(
        type='JanusProUMM',
        config=dict(
            text_config=dict(
                model_type='llama', vocab_size=1024, hidden_size=64,
                intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4,
                max_position_embeddings=512),
            vision_config=dict(
                hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=64, patch_size=16, projection_dim=64, mlp_ratio=2,
                num_image_tokens=16),
            vq_config=dict(
                embed_dim=8, num_embeddings=512, base_channels=32,
                channel_multiplier=[1, 1, 2, 2, 4], latent_channels=32,
                num_res_blocks=1, projection_dim=64,
                image_token_embed_dim=64),
            image_token_id=3),
        tokenizer=dict(type='JanusDemoTokenizer', vocab_size=1024),
        frozen=['vision_model', 'vqmodel'],
        weights_dtype='float32',
        trainable_dtype='float32',
        generator=dict(
            type='AutoregressiveCodeGenerator', guidance_scale=5.0,
            temperature=1.0)),
    objectives=dict(
        recon=dict(type='ReconstructionAlignment', weight=1.0),
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)
