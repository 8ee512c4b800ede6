# Reconstruction of held-out images (data/eval/recon_heldout, any jpg/png/
# webp), each once, seed 0: PSNR and SSIM here; LPIPS and rFID once their
# feature networks are given (docs/evaluation.md). The model config sets
# the understanding and generation views.
test_dataloader = dict(
    batch_size=8,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(type='HeldOutImages', name='recon', seed=0,
                 source=dict(type='ImageFolder',
                             root='data/eval/recon_heldout')))
test_evaluator = dict(type='ReconstructionMetric', lpips=None,
                      fid_features=None)
test_cfg = dict(type='TestLoop')
