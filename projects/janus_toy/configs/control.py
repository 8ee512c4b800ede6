# The equal-compute control for configs/reca/janus_toy.py: the same images,
# steps, batch split, learning rate and image-to-text data, but the
# generation objective reads the images' SPARSE captions (text-to-image,
# exactly as in pretraining) instead of the model's own understanding of
# them. RecA's gain is what it adds over this.
#   python tools/train.py projects/janus_toy/configs/control.py
_base_ = ['../../../configs/reca/janus_toy.py']

model = dict(objectives=dict(
    _delete_=True,
    t2i=dict(type='TextToImage', null_prob=0.1),
    i2t=dict(type='ImageToText', weight=1.0)))
train_dataloader = dict(
    sampler=dict(ratios=dict(_delete_=True, t2i=1, i2t=1)),
    dataset=dict(sources=dict(
        _delete_=True,
        t2i=dict(
            type='GenEvalShapesScenes', num_scenes=20000, seed=2,
            include_held_out=True, unnamed_held_out=True,
            sparse=dict(color_drop=0.5, relation_drop=0.7),
            pipeline=[dict(type='LoadImage'),
                      dict(type='ImageViews', gen_size=64)]),
        i2t=dict(
            type='GenEvalShapesScenes', num_scenes=20000, seed=1,
            include_held_out=True,
            pipeline=[dict(type='LoadImage'),
                      dict(type='ImageViews', und_size=64)]))))
custom_hooks = [
    dict(type='BeforeAfterValHook'),
    dict(type='EvalSampleGridHook', num_images=24, ncols=6),
]
