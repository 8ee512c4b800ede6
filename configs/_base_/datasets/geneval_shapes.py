# GenEval-Shapes (offline, exact): the fixed 300-prompt suite (50 per tag),
# one image per prompt, seed = prompt index; scored by palette snapping and
# connected components. See docs/evaluation.md.
test_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(
        type='GenEvalShapesPrompts', num_prompts=300, suite_seed=0,
        num_images=1, seed=0, seed_policy='index'))
test_evaluator = dict(
    type='GenEvalMetric',
    prefix='geneval_shapes',
    out_dir=None,
    detector=dict(type='PaletteShapeDetector'),
    color_classifier=dict(type='PaletteColorClassifier'))
test_cfg = dict(type='TestLoop')
