# BAGEL-7B-MoT on ImgEdit with the RecA authors' editing settings
# (BAGEL/eval/gen/gen_images_mp_imgedit.py of HorizonWind2004/
# reconstruction-alignment): the source as clean VAE latents and ViT tokens
# in the context, then the instruction; text CFG 4 then image CFG 1.5
# (serial, 'text_channel' renorm) on [0, 1], timestep shift 3, 50
# timesteps; seed 42 (configs/_base_/datasets/imgedit.py). Upstream resizes
# the source keeping its aspect (VAE: long side <= 1024, short >= 512; ViT:
# long side <= 980, short >= 378); here it is padded to a square, 1024 px
# for the VAE and 980 px for the ViT (a square source's upstream sizes).
_base_ = [
    '../_base_/models/bagel_7b_mot.py',
    '../_base_/datasets/imgedit.py',
    '../_base_/default_runtime.py',
]
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImage'),
    dict(type='ImageViews', und_size=980, gen_size=1024, mode='pad'),
]))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
