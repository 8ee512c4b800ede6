# GenEval (553 prompts, vendored MIT metadata) with the RecA protocol: 12
# images per prompt, every prompt sampled with seed 0. Scored here with
# Mask2Former + CLIP from local weights (users' GPU machines), or by the
# official scorer in its own environment: see docs/evaluation.md.
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(type='GenEvalPrompts', metadata_file=None, num_images=12,
                 seed=0, seed_policy='constant'))
test_evaluator = dict(
    type='GenEvalMetric',
    out_dir='work_dirs/geneval/images',
    detector=dict(
        type='MMDetDetector',
        config='checkpoints/geneval/'
        'mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py',
        checkpoint='checkpoints/geneval/'
        'mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.safetensors'),
    color_classifier=dict(
        type='OpenCLIPColorClassifier', arch='ViT-L-14',
        checkpoint='checkpoints/geneval/open_clip_vit_l_14_openai.safetensors'
    ))
test_cfg = dict(type='TestLoop')
