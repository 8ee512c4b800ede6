# Show-o-512 (CLIP) on dpg_bench with the RecA authors' sampling (Show-o/
# scripts/dpg.py and inference_benchmark.py of HorizonWind2004/
# reconstruction-alignment): 512 px, 50 MaskGIT steps, guidance 5 (6 in the
# toolkit's form), temperature 1 (configs/_base_/models/showo_512.py);
# 4 images per prompt, seed 0 per prompt (configs/_base_/datasets/
# dpg_bench.py).
_base_ = [
    '../_base_/models/showo_512.py',
    '../_base_/datasets/dpg_bench.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
