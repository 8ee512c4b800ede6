# Show-o-512 (CLIP) on geneval with the RecA authors' sampling (Show-o/
# scripts/inference_benchmark.py of HorizonWind2004/reconstruction-
# alignment, showo_demo_512x512.yaml): 512 px, the prompt as given, 50
# MaskGIT steps, guidance 5 (6 in the toolkit's form), temperature 1
# (configs/_base_/models/showo_512.py); 12 images per prompt under the RecA
# protocol of configs/_base_/datasets/geneval.py (upstream seeds each image
# with its index; here each prompt's 12 images come from one generator
# seeded 0).
_base_ = [
    '../_base_/models/showo_512.py',
    '../_base_/datasets/geneval.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
