# The demo shrunk for tests: 30 iterations, checkpoints every 10 iterations,
# small sample grids. The learning rate warms up, then decays, so that a
# resume which restarts or skips the schedule changes the weights.
_base_ = ['../../configs/reca/janus_pro_demo.py']

max_iters = 30
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=False, begin=10,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=10, max_keep_ckpts=5))
custom_hooks = [
    dict(type='SampleGridHook', interval=30, num_images=2,
         prompts=['a red circle']),
    dict(type='SkippedImagesHook'),
]
# Training tests do not evaluate; tests/test_eval_* cover the val loop.
val_dataloader = None
val_cfg = None
val_evaluator = None
