# Janus-Pro-1B on imgedit: the source image through SigLIP at 384 px (padded
# to a square, as Janus's processor does) conditions generation with the
# edit instruction; Janus's sampler, the RecA protocol of
# configs/_base_/datasets/imgedit.py.
_base_ = [
    '../_base_/models/janus_pro_1b.py',
    '../_base_/datasets/imgedit.py',
    '../_base_/default_runtime.py',
]
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImage'),
    dict(type='ImageViews', und_size=384, mode='pad'),
]))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
