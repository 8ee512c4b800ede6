# RecA post-training of Show-o-256 (CLIP variant, showlab/show-o-w-clip-vit)
# with the RecA authors' recipe (HorizonWind2004/reconstruction-alignment,
# Show-o/configs/showo_reca_256_clip.yaml): as configs/reca/showo_512.py at
# 256 px (256 codes), 5 accumulated micro-batches of 4 + 4 per step, i.e.
# 20 + 20 per iteration here, and the cosine over max_train_steps = 10,000.
#   python tools/train.py configs/reca/showo_256.py
# Weights: checkpoints/Show-o-256 (showo/ <- showlab/show-o-w-clip-vit;
#          phi-1_5/, magvitv2/, clip/ as for Show-o-512).
_base_ = ['./showo_512.py']
model = dict(umm=dict(pretrained='checkpoints/Show-o-256', image_size=256))
train_dataloader = dict(batch_size=40, dataset=dict(sources=dict(
    recon=dict(pipeline=[
        dict(type='LoadImage'),
        dict(type='ImageViews', und_size=256, gen_size=256, mode='stretch'),
    ]))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=1000),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=1000,
         end=10000),
]
