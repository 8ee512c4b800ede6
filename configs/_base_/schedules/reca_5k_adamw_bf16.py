# The RecA recipe (Harmon/OpenUni configs, research/reca_method.md section 4):
# AdamW lr 1e-5, betas (0.9, 0.95), weight decay 0.02 except norms, biases
# and embeddings; 1% linear warm-up then cosine; 5000 iterations; grad clip
# 1.0; bf16 autocast with float32 master weights.
max_iters = 5000
warmup_iters = 50

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    constructor='DecayGroupsOptimWrapperConstructor',
    # fused: one kernel for the whole update (docs/performance.md).
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.95),
                   weight_decay=0.02, fused=True),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters)
