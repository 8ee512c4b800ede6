# Janus-Pro-1B reconstruction of held-out images: SigLIP view at 384 px in,
# VQ generation at 384 px out, Janus's sampler.
_base_ = [
    '../_base_/models/janus_pro_1b.py',
    '../_base_/datasets/recon_heldout.py',
    '../_base_/default_runtime.py',
]
test_dataloader = dict(dataset=dict(source=dict(pipeline=[
    dict(type='LoadImage'),
    dict(type='ImageViews', und_size=384, gen_size=384),
])))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
