# BAGEL-7B-MoT on DPG-Bench with the RecA authors' sampling (BAGEL/eval/gen/
# gen_images_dpg.py of HorizonWind2004/reconstruction-alignment): as
# GenEval's, but text CFG 3.0 and 4 images per prompt, seed 0. (Their
# run_dpg.sh passes --use-ema; point pretrained= at a folder without
# model.safetensors to evaluate ema.safetensors as they did.)
_base_ = [
    '../_base_/models/bagel_7b_mot.py',
    '../_base_/datasets/dpg_bench.py',
    '../_base_/default_runtime.py',
]
model = dict(umm=dict(flow=dict(guidance_scale=3.0)))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
