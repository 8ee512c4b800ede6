# BAGEL-7B-MoT (ByteDance-Seed/BAGEL-7B-MoT) from a local folder:
# ema.safetensors (or the RecA release's model_bf16.safetensors renamed to
# it), ae.safetensors, llm_config.json, vit_config.json and the tokenizer,
# see reca_toolkit/models/bagel_weights.py. As the RecA authors' command
# (HorizonWind2004/reconstruction-alignment, BAGEL/README.md:
# --freeze_vae --freeze_vit --freeze_und; pretrain_unified_navit.py also
# freezes the connector): only the generation expert, vae2llm, llm2vae and
# the timestep embedder train; bf16 weights with float32 trainable copies;
# activation checkpointing of the MoT layers. Generation at 1024 px (a
# 64 x 64 latent grid: 4096 tokens), ViT input 224 px (256 tokens).
model = dict(
    type='RecAModel',
    umm=dict(
        type='BagelUMM',
        pretrained='checkpoints/BAGEL-7B-MoT',
        frozen=['vae', 'vit', 'connector'],
        freeze_und=True,
        weights_dtype='bfloat16',
        trainable_dtype='float32',
        attn_implementation='sdpa',
        gradient_checkpointing=True,
        image_size=1024,
        vit_select_layer=-2,
        vit_max_num_patch_per_side=70,
        max_latent_size=64,
        # Training: t = sigmoid(N(0, 1)), shift 1 (timestep_shift default).
        # Sampling as the authors' BAGEL/eval/gen/gen_images_mp.py with
        # Bagel's generate_image: num_timesteps 50 (linspace(1, 0, 50)
        # shifted by 3: 49 Euler steps), cfg_text 4 on cfg_interval [0, 1],
        # cfg_renorm_type 'global' with cfg_renorm_min 0: one norm over
        # everything a call samples, as upstream's packed sequence
        # (cfg_renorm='sample' gives each image its own).
        flow=dict(type='FlowMatchingGenerator',
                  timestep_sampling='logit_normal', shift=1.0,
                  scheduler='euler', sampling_shift=3.0,
                  sigma_grid='uniform', num_inference_steps=49,
                  guidance_scale=4.0, cfg_interval=(0.0, 1.0),
                  cfg_renorm='global', cfg_renorm_min=0.0)),
    objectives=dict(
        # Upstream drops the text split with text_cond_dropout_prob 0.1: the
        # generic instruction (None) is no text split at all. No CE loss.
        recon=dict(type='ReconstructionAlignment', weight=1.0,
                   generic_prob=0.1),
    ),
)
