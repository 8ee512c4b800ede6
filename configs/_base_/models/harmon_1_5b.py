# Harmon-1.5B (wusize/harmon: Qwen2.5-1.5B-Instruct + MAR-H over the KL-16
# VAE) from a local folder: config.json + tokenizer of Qwen2.5-1.5B-Instruct,
# kl16.ckpt and harmon_1.5b.pth (or their safetensors), see
# reca_toolkit/models/harmon_weights.py. As in the RecA authors' Harmon
# recipe (HorizonWind2004/reconstruction-alignment, Harmon/configs/models/
# qwen2_5_1_5b_kl16_mar_h.py and configs/examples/reca.py): the VAE frozen,
# the LLM, MAR and both projections trained; bf16 weights with float32
# trainable copies; activation checkpointing; 512 px (a 32 x 32 latent grid:
# 1024 tokens plus 64 buffer tokens).
model = dict(
    type='RecAModel',
    umm=dict(
        type='HarmonUMM',
        pretrained='checkpoints/Harmon-1.5B',
        variant='1.5b',
        frozen=['vae'],
        weights_dtype='bfloat16',
        trainable_dtype='float32',
        attn_implementation='sdpa',
        gradient_checkpointing=True,
        # Image-to-text logits 1024 positions at a time: the same loss
        # without every answer token's 151,936-way float32 logits at once
        # (0.6 MB a position).
        ce_chunk_size=1024,
        image_size=512,
        # MAR sizes come from the variant (MAR-H, DiffLoss 12 x 1536).
        # Sampling as the authors' scripts/geneval.py: 64 MAR steps, CFG 3.0
        # constant against "Generate an image.", temperature 1.0, 100
        # diffusion steps. Training keeps the toolkit's two differences
        # from upstream (docs/families.md): one mask ratio per sample, and
        # no dropout (upstream 0.1; attn_dropout=0.1, proj_dropout=0.1
        # restore it, at the price of resume-exactness).
        mar=dict(
            type='MaskedAutoregressiveGenerator',
            num_iter=64, guidance_scale=3.0, cfg_schedule='constant',
            temperature=1.0, head=dict(num_sampling_steps=100))),
    objectives=dict(
        # 10% of samples use "Generate an image." instead of an
        # instruction (upstream: unconditional=0.1).
        recon=dict(type='ReconstructionAlignment', weight=1.0,
                   generic_prob=0.1),
        # Reads the 'i2t' source (configs/reca/harmon_1_5b.py).
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)
