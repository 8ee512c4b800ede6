# Janus-Pro-1B in the transformers layout (deepseek-community/Janus-Pro-1B),
# from a local folder. SigLIP and the VQ tokenizer are frozen; the LLM, both
# aligners and the generation embeddings/head train.
model = dict(
    type='RecAModel',
    umm=dict(
        type='JanusProUMM',
        pretrained='checkpoints/Janus-Pro-1B',
        frozen=['vision_model', 'vqmodel'],
        weights_dtype='bfloat16',
        trainable_dtype='float32',
        attn_implementation='sdpa',
        # Cross-entropy logits 1024 positions at a time: same loss, without
        # 0.6 GB of float32 logits per 16 samples (docs/performance.md).
        ce_chunk_size=1024,
        generator=dict(
            type='AutoregressiveCodeGenerator', guidance_scale=5.0,
            temperature=1.0)),
    objectives=dict(
        recon=dict(type='ReconstructionAlignment', weight=1.0,
                   generic_prob=0.1),
        # Reads the 'i2t' source when one is configured (janus_pro_llava.py).
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)
