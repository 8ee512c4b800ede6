# The RecA authors' Show-o schedule (HorizonWind2004/reconstruction-
# alignment, Show-o/configs/showo_reca_clip.yaml): AdamW lr 5e-7, betas
# (0.9, 0.999), eps 1e-8, weight decay 0.01 (none on biases, norms and
# embeddings, as Show-o's optimizer groups); 1000 steps of linear warm-up
# from 0, then cosine over max_train_steps = 1,000,000 (so practically
# constant); no gradient clipping (max_grad_norm: null); bf16. The authors
# report their step-5000 checkpoints (that repository's issue #15).
#
# Upstream accumulates 5 micro-batches of 2 reconstruction + 2 LLaVA samples
# per optimizer step on one GPU (gradient_accumulation_steps 5, batch_size_
# recon 2, batch_size_mmu 2; its t2i batch has coefficient 0). Here one
# iteration holds the whole step, 10 + 10 samples (configs/reca/showo_*.py),
# and the losses average over the global batch, so one iteration is one
# upstream step and the scheduler counts the same steps.
max_iters = 5000
warmup_iters = 1000

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-7, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0.01, fused=True),
    clip_grad=None,
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=1000000),
]
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters)
