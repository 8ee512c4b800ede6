# Harmon-1.5B on geneval with the RecA authors' sampling (Harmon/scripts/
# geneval.py of HorizonWind2004/reconstruction-alignment): 512 px, the prompt
# "Generate an image: {p}" (HarmonUMM's prompt_template), CFG 3.0 constant
# against "Generate an image.", 64 MAR steps, temperature 1.0 and 100
# diffusion steps (configs/_base_/models/harmon_1_5b.py); 12 images per
# prompt, every prompt seeded with 0, under the RecA protocol of
# configs/_base_/datasets/geneval.py.
_base_ = [
    '../_base_/models/harmon_1_5b.py',
    '../_base_/datasets/geneval.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
