# The real Show-o pieces -- transformers Phi and CLIPVisionModel, the
# mm_projector MLP, the MAGVIT-v2 (LFQ) tokenizer, the MaskGIT generator --
# at a tiny random size, with a tokenizer built in code: runs anywhere,
# downloads nothing. 32 px images: 8 x 8 = 64 MAGVIT-v2 codes of a 64-code
# LFQ (6 bits); CLIP sees 4 x 4 = 16 patches. The vocabulary is laid out as
# Show-o's: 512 text tokens (Show-o's 10 among them), 64 codes, 1 mask token.
model = dict(
    type='RecAModel',
    umm=dict(
        type='ShowoUMM',
        understanding='clip',
        config=dict(
            vocab_size=512 + 64 + 1, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=512, partial_rotary_factor=0.5),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, image_size=32, patch_size=8,
            projection_dim=32),
        gen_tokenizer=dict(
            type='MAGVITv2Tokenizer', ch=32, encoder_ch_mult=(1, 2, 2),
            encoder_num_res_blocks=(1, 2, 1), decoder_ch_mult=(1, 1, 2),
            decoder_num_res_blocks=(2, 1, 1), z_channels=6),
        tokenizer=dict(type='ShowoDemoTokenizer', vocab_size=512),
        image_size=32,
        frozen=['vision', 'magvit'],
        # Show-o's text block is 128 tokens; the tiny one is 48.
        max_text_length=48,
        weights_dtype='float32',
        trainable_dtype='float32',
        # Fewer steps than the authors' 50: sample grids in seconds.
        generator=dict(type='MaskGITGenerator', num_inference_steps=4,
                       guidance_scale=6.0)),
    objectives=dict(
        # Show-o's RecA drops nothing: every sample gets an instruction.
        recon=dict(type='ReconstructionAlignment', weight=1.0,
                   generic_prob=0.0),
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)
