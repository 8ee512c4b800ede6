# BAGEL-7B-MoT on GenEval with the RecA authors' sampling (BAGEL/eval/gen/
# gen_images_mp.py of HorizonWind2004/reconstruction-alignment): 1024 px,
# the prompt as the text split, text CFG 4 on [0, 1], timestep shift 3,
# num_timesteps 50, global renorm with minimum 0
# (configs/_base_/models/bagel_7b_mot.py) shared by the 4 images of one
# packed call (upstream's --batch_size 4); 12 images per prompt, every
# prompt seeded with 0. The authors evaluate model.safetensors (no
# --use-ema), which the loader reads when the folder has it.
_base_ = [
    '../_base_/models/bagel_7b_mot.py',
    '../_base_/datasets/geneval.py',
    '../_base_/default_runtime.py',
]
model = dict(umm=dict(flow=dict(cfg_renorm_group=4)))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
