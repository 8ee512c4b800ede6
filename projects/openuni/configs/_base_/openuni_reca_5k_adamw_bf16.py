# The RecA authors' OpenUni schedule, as written in their OpenUni-B config
# (OpenUni/configs/finetune/reca_1_0.6.py of the RecA repository,
# HorizonWind2004/reconstruction-alignment): AdamW lr 1e-5, betas
# (0.9, 0.95), weight decay 0.05 on parameters of two or more dimensions
# (DecayGroupsOptimWrapperConstructor exempts norms, biases and embeddings;
# every other OpenUni parameter that trains is a matrix, a convolution or
# SANA's 2-D scale-shift tables, so the groups are the same), grad clip 1.0,
# bf16 autocast over float32 master weights (upstream: DeepSpeed ZeRO-2
# bf16), linear warm-up over 1% of the scheduled iterations then cosine to 0.
#
# One upstream iteration is one micro-batch of 42 reconstruction samples per
# GPU, as one of ours is here (reconstruction is the only source); the
# released checkpoints are iter_5000. The schedule is set for a longer run
# (cosine_end), as upstream's is: -B schedules 10000 iterations with 4-step
# gradient accumulation, -L 5000 with 16 (see reca_openuni_l.py).
max_iters = 5000
cosine_end = 10000
warmup_iters = cosine_end // 100  # 1%
accumulative_counts = 4

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.95),
                   weight_decay=0.05, fused=True),
    clip_grad=dict(max_norm=1.0),
    accumulative_counts=accumulative_counts,
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=cosine_end),
]
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters)
