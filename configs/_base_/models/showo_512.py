# Show-o-512 with CLIP-ViT (showlab/show-o-w-clip-vit-512x512: Phi-1.5 with
# Show-o's 58498-token vocabulary, CLIP-ViT-L/14-336 + mm_projector for
# understanding, MAGVIT-v2 codes for generation) from a local folder laid
# out as reca_toolkit/models/showo_weights.py describes (showo/, phi-1_5/,
# magvitv2/, clip/). As in the RecA authors' recipe (HorizonWind2004/
# reconstruction-alignment, Show-o/configs/showo_reca_clip.yaml and
# training/train_recon_w_clip_vit.py): CLIP and MAGVIT-v2 frozen, the
# transformer (and, through image-to-text, the projector and embeddings)
# trained; reconstruction inputs built without autograd (recon_grad=
# 'parity'; 'full' lets the reconstruction gradient reach the projector and
# the embedding table); bf16 weights with float32 trainable copies;
# activation checkpointing; 512 px: 1024 codes.
model = dict(
    type='RecAModel',
    umm=dict(
        type='ShowoUMM',
        pretrained='checkpoints/Show-o-512',
        understanding='clip',
        frozen=['vision', 'magvit'],
        recon_grad='parity',
        weights_dtype='bfloat16',
        trainable_dtype='float32',
        attn_implementation='sdpa',
        gradient_checkpointing=True,
        image_size=512,
        max_text_length=128,
        # Sampling as the authors' scripts/inference_benchmark.py: 50
        # MaskGIT steps, guidance 5 in Show-o's (1 + w) cond - w uncond,
        # which is 6 in the toolkit's uncond + s (cond - uncond); Show-o's
        # compounding noise annealing, temperature 1.
        generator=dict(type='MaskGITGenerator', num_inference_steps=50,
                       guidance_scale=6.0, temperature=1.0,
                       annealing='showo')),
    objectives=dict(
        # No instruction dropout in Show-o's RecA.
        recon=dict(type='ReconstructionAlignment', weight=1.0,
                   generic_prob=0.0),
        # Reads the 'i2t' source: LLaVA conversations (mmu_coeff 1).
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)
