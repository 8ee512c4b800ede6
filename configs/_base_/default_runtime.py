default_scope = 'reca_toolkit'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # reca_toolkit's CheckpointHook (registered under MMEngine's name): the
    # new checkpoint is complete on disk before an old one is deleted.
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=1000,
        max_keep_ckpts=3, save_last=True),
)
custom_hooks = [
    dict(type='SampleGridHook', interval=500, num_images=4,
         prompts=['a red apple on a wooden table',
                  'a blue car parked left of a yellow house']),
    dict(type='SkippedImagesHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# UMMs leave parts unused on some steps (lm_head on reconstruction batches).
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)

visualizer = dict(
    type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
log_processor = dict(by_epoch=False, window_size=10)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=42)
