# The RecA authors' Harmon schedule (HorizonWind2004/reconstruction-alignment,
# Harmon/configs/examples/reca.py with datasets/qwen2_5_1_5b/
# image2text_recon_mid.py; read at commit eab35d6, "Release Harmon training
# guide", unchanged since), translated to this toolkit's iterations.
#
# Upstream, one MMEngine iteration is ONE single-source micro-batch (48
# samples per GPU for 1.5B, 96 for 0.5B), its FixedBatchMultiSourceSampler
# cycles recon, recon, image2text, image2text (repeat=[2, 2, 0]) and
# accumulative_counts = sum(repeat) = 4, so an optimizer step is 2 recon + 2
# i2t micro-batches. The LR schedule is set for max_iters = 50000 (linear
# warm-up over warmup_ratio 0.01 of it from start_factor 1e-5, then cosine to
# 50000); the released checkpoints are iter_5000: 1250 optimizer steps.
#
# Here one iteration holds both sources, one upstream micro-batch of each
# (configs/reca/harmon_*.py: 48 + 48 per GPU for 1.5B, 96 + 96 for 0.5B;
# recon:i2t 1:1), i.e. two upstream micro-batches. So:
#   accumulative_counts 4 -> 2          (an optimizer step is still two
#                                        micro-batches of each source)
#   5000 iterations used  -> 2500       (1250 optimizer steps, as upstream)
#   warm-up 500 (1% of 50k) -> 250
#   cosine to 50000       -> to 25000   (so at 2500 the LR is still 98% of
#                                        its peak, as upstream's at 5000)
# and the parameter schedulers step every iteration, as MMEngine's do
# upstream.
#
# Upstream's objectives each weigh 1.0 on their own micro-batch, and the
# accumulated step divides by 4: its gradient is (recon + i2t) / 2. Here both
# objectives (weight 1.0) are summed in one iteration and divided by 2: twice
# that gradient. AdamW's update does not see the scale; clipping does, so
# max_norm 2.0 here is upstream's max_norm 1.0.
#
# AdamW lr 1e-5, betas (0.9, 0.95), weight decay 0.02 except 1-D parameters,
# biases, embeddings and the DiffLoss head (HarmonUMM.no_decay_modules;
# upstream's MAROptimWrapperConstructor decays the embedding table);
# bf16 autocast with float32 master weights (upstream: DeepSpeed ZeRO-2 bf16).
upstream_micro_batches_per_iter = 2
max_iters = 5000 // upstream_micro_batches_per_iter  # 2500
warmup_iters = 500 // upstream_micro_batches_per_iter  # 250
cosine_end = 50000 // upstream_micro_batches_per_iter  # 25000

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.95),
                   weight_decay=0.02, fused=True),
    clip_grad=dict(max_norm=2.0, error_if_nonfinite=False),
    accumulative_counts=4 // upstream_micro_batches_per_iter,  # 2
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=cosine_end),
]
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters)
