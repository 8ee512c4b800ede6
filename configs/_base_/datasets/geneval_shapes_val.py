# In-training evaluation on GenEval-Shapes: the suite's first `num_prompts`
# prompts (50 per tag at 300), one image each, seed = prompt index, scored
# exactly. Configs that include this set val_interval in train_cfg.
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(type='GenEvalShapesPrompts', num_prompts=300, suite_seed=0,
                 num_images=1, seed=0, seed_policy='index'))
val_evaluator = dict(
    type='GenEvalMetric',
    prefix='geneval_shapes',
    detector=dict(type='PaletteShapeDetector'),
    color_classifier=dict(type='PaletteColorClassifier'))
val_cfg = dict(type='ValLoop')
