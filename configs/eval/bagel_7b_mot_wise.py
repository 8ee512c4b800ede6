# BAGEL-7B-MoT on WISE with the RecA authors' sampling (BAGEL/eval/gen/
# gen_images_mp_wise.py of HorizonWind2004/reconstruction-alignment): text
# CFG 4 only on t in (0.4, 1], timestep shift 3, 50 timesteps, one image
# per prompt, seed 0.
_base_ = [
    '../_base_/models/bagel_7b_mot.py',
    '../_base_/datasets/wise.py',
    '../_base_/default_runtime.py',
]
model = dict(umm=dict(flow=dict(cfg_interval=(0.4, 1.0))))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
