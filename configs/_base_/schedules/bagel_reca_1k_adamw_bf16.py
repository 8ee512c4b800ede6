# The RecA authors' BAGEL schedule (HorizonWind2004/reconstruction-alignment,
# BAGEL/README.md training command with BAGEL/train/pretrain_unified_navit.py
# defaults): AdamW lr 4e-5 (--lr 0.00004), betas (0.9, 0.95), eps 1e-15,
# weight decay 0; 1000 linear warm-up steps, then constant
# (lr_scheduler 'constant'); gradient clipping at 1.0; bf16 autocast. No
# gradient accumulation upstream. Upstream's loop never stops by itself; the
# authors evaluate the step-1000 checkpoint (author issue #15), where the
# learning rate has just finished warming up, so 1000 iterations here.
# Upstream's warm-up starts at 0 (step 0 trains at lr 0); MMEngine's LinearLR
# needs a positive start, 1e-3, which is upstream's factor one step later.
max_iters = 1000
warmup_iters = 1000

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.95), eps=1e-15,
                   weight_decay=0.0, fused=True),
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
)
# After the warm-up no scheduler runs: the learning rate stays at its peak.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
]
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters)
