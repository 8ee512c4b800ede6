# Rendered shape scenes (no download): reconstruction plus image-to-text on
# their dense captions, 1:1; and held-out scenes for evaluation.
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

test_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='MultiSourceSampler', shuffle=False),
    batch_sampler=dict(type='MultiSourceBatchSampler'),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(
        type='MultiSourceDataset',
        sources=dict(
            recon=dict(
                type='ShapeScenes', num_scenes=16, seed=999,
                pipeline=[
                    dict(type='LoadImage'),
                    dict(type='ImageViews', und_size=64, gen_size=64),
                ]))))
test_evaluator = dict(type='ReconstructionMetric')
test_cfg = dict(type='TestLoop')
