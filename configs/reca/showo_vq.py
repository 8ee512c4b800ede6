# RecA post-training of Show-o-512 in the authors' VQ variant
# (HorizonWind2004/reconstruction-alignment, Show-o/configs/showo_reca.yaml,
# training/train_recon.py; the paper's appendix and its Fig. 12): the
# condition is the MAGVIT-v2 codes of the image downscaled x2. For "blur8"
# (showo_reca_blur8.yaml: x8 then resized back) add
#   --cfg-options model.umm.vq_downscale=8 model.umm.vq_resize_back=True
# The schedule and batch are the CLIP variant's (configs/reca/showo_512.py).
#   python tools/train.py configs/reca/showo_vq.py
# Weights: checkpoints/Show-o-512-VQ (showo/ <- showlab/show-o-512x512,
#          phi-1_5/, magvitv2/ as for Show-o-512; no CLIP).
_base_ = [
    '../_base_/models/showo_vq.py',
    '../_base_/datasets/showo_reca_llava.py',
    '../_base_/schedules/showo_reca_5k_adamw_bf16.py',
    '../_base_/default_runtime.py',
]
# Image-to-text reads the MAGVIT-v2 codes of the 512 px image (upstream
# resizes LLaVA images to the generation resolution).
train_dataloader = dict(batch_size=20, dataset=dict(sources=dict(
    i2t=dict(pipeline=[
        dict(type='LoadImage'),
        dict(type='ImageViews', und_size=512, mode='center_crop'),
    ]))))
default_hooks = dict(checkpoint=dict(interval=1000))
randomness = dict(seed=10086)  # upstream training.seed
