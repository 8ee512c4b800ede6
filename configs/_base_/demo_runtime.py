# The tiny demos' runtime: the default one on a CPU (gloo), logging every
# 10 iterations, a checkpoint every 100 (two kept), sample grids of prompts
# the shape scenes can answer, and the validation samples' grid.
_base_ = ['./default_runtime.py']

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=2))
custom_hooks = [
    dict(type='SampleGridHook', interval=100, num_images=8,
         prompts=['a red circle at the top left',
                  'a blue square and a yellow triangle',
                  'a green circle at the center',
                  'a purple triangle at the bottom right']),
    dict(type='SkippedImagesHook'),
    dict(type='EvalSampleGridHook', num_images=12, ncols=6),
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
