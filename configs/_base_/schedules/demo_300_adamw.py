# The tiny demos' schedule: 300 iterations of AdamW (lr 1e-3, 10% linear
# warm-up, then cosine), grad clip 1.0, validation at 100, 200 and 300.
max_iters = 300
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95),
                   weight_decay=0.02),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=30),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=30,
         end=max_iters),
]
# val_begin keeps shortened runs (tests, smoke checks) from validating.
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters,
                 val_begin=100, val_interval=100)

