# Rendered shape scenes (no download): reconstruction plus image-to-text on
# their dense captions, 1:1; and held-out scenes for evaluation.
_base_ = ['./geneval_shapes_val.py']

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='MultiSourceSampler', shuffle=True),
    batch_sampler=dict(type='MultiSourceBatchSampler'),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(
        type='MultiSourceDataset',
        sources=dict(
            recon=dict(
                type='ShapeScenes', num_scenes=2000, seed=0,
                pipeline=[
                    dict(type='LoadImage'),
                    dict(type='ImageViews', und_size=64, gen_size=64),
                ]),
            i2t=dict(
                type='ShapeScenes', num_scenes=2000, seed=1,
                pipeline=[
                    dict(type='LoadImage'),
                    dict(type='ImageViews', und_size=64),
                ]))))

# Reconstruction of 16 held-out scenes, each once (DefaultSampler), seeded.
test_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(
        type='HeldOutImages', name='recon', seed=0,
        source=dict(
            type='ShapeScenes', num_scenes=16, seed=999, captioned=False,
            pipeline=[
                dict(type='LoadImage'),
                dict(type='ImageViews', und_size=64, gen_size=64),
            ])))
test_evaluator = dict(type='ReconstructionMetric')
test_cfg = dict(type='TestLoop')

# In-training evaluation: a 24-prompt GenEval-Shapes subset (4 per tag).
val_dataloader = dict(dataset=dict(num_prompts=24))
