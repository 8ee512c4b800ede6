# Janus-Pro-1B on geneval: Janus's sampler (CFG 5, temperature 1, 576 image
# tokens at 384 px, configs/_base_/models/janus_pro_1b.py) under the RecA
# protocol of configs/_base_/datasets/geneval.py.
_base_ = [
    '../_base_/models/janus_pro_1b.py',
    '../_base_/datasets/geneval.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
