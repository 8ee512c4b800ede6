# RecA post-training of OpenUni-B (InternVL3-1B + SANA 0.6B 512 px + DC-AE
# f32c32) with the RecA authors' recipe (their OpenUni/configs/finetune/
# reca_1_0.6.py): InternVL3 and the DC-AE frozen; SANA, the connector, the
# projector and the 256 meta-queries train; 42 images per GPU and
# iteration, 512 px generated, 448 px for InternViT; no dropout.
#   python tools/train.py projects/openuni/configs/reca_openuni_b.py
#   bash tools/dist_train.sh projects/openuni/configs/reca_openuni_b.py 8
# Weights (projects/openuni/README.md), each a local path:
#   checkpoints/openuni/
#     openuni_b_internvl3_1b_sana_0_6b_512_hf_text2image23m.pth
#   checkpoints/InternVL3-1B-hf
#   checkpoints/Sana_600M_512px_diffusers
#   checkpoints/dc-ae-f32c32-sana-1.1-diffusers
# Images: data/reca/images (unlabeled jpg/png/webp, recursive); the authors
#   used BLIP3o-60k and MidjourneyV6 (configs/_base_/datasets/).
# Check memory first: python tools/analysis_tools/estimate.py THIS_CONFIG
_base_ = [
    '../../../configs/_base_/datasets/reca_images.py',
    './_base_/openuni_reca_5k_adamw_bf16.py',
    '../../../configs/_base_/default_runtime.py',
]
custom_imports = dict(imports=['projects.openuni.openuni'],
                      allow_failed_imports=False)
und_size = 448
gen_size = 512

model = dict(
    type='RecAModel',
    umm=dict(
        type='OpenUniUMM',
        variant='b',
        weights=dict(
            checkpoint='checkpoints/openuni/openuni_b_internvl3_1b_sana_0_6b_'
                       '512_hf_text2image23m.pth',
            internvl='checkpoints/InternVL3-1B-hf',
            sana='checkpoints/Sana_600M_512px_diffusers',
            dcae='checkpoints/dc-ae-f32c32-sana-1.1-diffusers'),
        image_size=gen_size,
        und_size=und_size,
        num_queries=256,
        frozen=['vision', 'llm', 'lm_head', 'vae'],
        weights_dtype='bfloat16',
        trainable_dtype='float32',
        # upstream: use_activation_checkpointing=False
        gradient_checkpointing=False,
        generator=dict(type='FlowMatchingGenerator',
                       timestep_sampling='uniform',
                       num_inference_steps=20, guidance_scale=4.5)),
    objectives=dict(recon=dict(type='ReconstructionAlignment', weight=1.0,
                               generic_prob=0.0)),
)
train_dataloader = dict(
    batch_size=42,
    dataset=dict(sources=dict(recon=dict(pipeline=[
        dict(type='LoadImage'),
        dict(type='ImageViews', und_size=und_size, gen_size=gen_size,
             mode='center_crop'),
    ]))))
default_hooks = dict(checkpoint=dict(interval=1000))
