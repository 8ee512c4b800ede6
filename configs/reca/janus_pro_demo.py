# The embedded demo: RecA on the real transformers Janus classes in a tiny
# random configuration, on shape scenes the toolkit renders itself. Runs on
# a 2-core CPU in about a minute and writes a checkpoint, the loss log and
# reconstruction / prompt sample grids under work_dirs/janus_pro_demo.
# Every 100 iterations it scores a GenEval-Shapes subset (scalars
# geneval_shapes/*, grid val_samples); with the random VQ-VAE expect ~0.
#   python tools/train.py configs/reca/janus_pro_demo.py
_base_ = [
    '../_base_/models/janus_tiny.py',
    '../_base_/datasets/shapes_demo.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/demo_300_adamw.py',
]

# The demo schedule, at twice its learning rate.
optim_wrapper = dict(optimizer=dict(lr=2e-3))

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
