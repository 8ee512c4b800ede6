# BAGEL-7B-MoT on ImgEdit with the RecA authors' editing settings
# (BAGEL/eval/gen/gen_images_mp_imgedit.py of HorizonWind2004/
# reconstruction-alignment): the source as clean VAE latents and ViT tokens
# in the context, then the instruction; text CFG 4 then image CFG 1.5
# (serial, 'text_channel' renorm) on [0, 1], timestep shift 3, 50
# timesteps; seed 42 (configs/_base_/datasets/imgedit.py). The source keeps
# its aspect, as upstream's ImageTransform sizes it (VAE: long side <= 1024,
# short >= 512, multiples of 16; ViT: <= 980, >= 378, multiples of 14), and
# the edit has the VAE view's shape.
_base_ = [
    '../_base_/models/bagel_7b_mot.py',
    '../_base_/datasets/imgedit.py',
    '../_base_/default_runtime.py',
]
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImage'),
    dict(type='AspectViews', und=(980, 378, 14), gen=(1024, 512, 16)),
]))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
