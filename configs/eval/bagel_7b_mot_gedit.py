# BAGEL-7B-MoT on GEdit-Bench (EN) with the RecA authors' editing settings
# (Benchmark/gedit/gen_images_gedit.py of HorizonWind2004/
# reconstruction-alignment): as configs/eval/bagel_7b_mot_imgedit.py (the
# source keeping its aspect, VAE <= 1024 / >= 512 px, ViT <= 980 / >= 378
# px; text CFG 4 then image CFG 1.5, 'text_channel' renorm, shift 3, 50
# timesteps), but guidance only on t in (0.4, 1]; seed 42
# (configs/_base_/datasets/gedit.py).
_base_ = [
    '../_base_/models/bagel_7b_mot.py',
    '../_base_/datasets/gedit.py',
    '../_base_/default_runtime.py',
]
model = dict(umm=dict(flow=dict(cfg_interval=(0.4, 1.0))))
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImage'),
    dict(type='AspectViews', und=(980, 378, 14), gen=(1024, 512, 16)),
]))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
