# RecA post-training of BAGEL-7B-MoT with the RecA authors' recipe
# (HorizonWind2004/reconstruction-alignment, BAGEL/README.md command and
# BAGEL/train/pretrain_unified_navit.py defaults; the sequence plan of
# BAGEL/data/t2i_dataset.py): ViT split at 224 px (never dropped) -> the
# instruction's text split (dropped with p 0.1) -> the VAE split at 1024 px
# with the flow-matching loss.
#   bash tools/dist_train.sh configs/reca/bagel.py 8
# Sharded, as the authors run it (FSDP over 6-8 GPUs):
#   configs/reca/bagel_fsdp.py
# Weights: checkpoints/BAGEL-7B-MoT (one local folder).
# Images:  data/reca/images (unlabeled jpg/png/webp, recursive).
# Check memory first: python tools/analysis_tools/estimate.py THIS_CONFIG
_base_ = [
    '../_base_/models/bagel_7b_mot.py',
    '../_base_/datasets/reca_images.py',
    '../_base_/schedules/bagel_reca_1k_adamw_bf16.py',
    '../_base_/default_runtime.py',
]
# VAE view 1024 px, ViT view 224 px (example.yaml: vit_image_transform
# image 224 stride 14; the text-to-image-2M 1024 px images stay 1024 px).
train_dataloader = dict(
    # Upstream packs about 32k tokens per GPU (expected_num_tokens 32768):
    # a 1024 px sample is 4096 latent + 258 ViT + ~30 text tokens, so
    # about 7 samples.
    batch_size=7,
    dataset=dict(sources=dict(recon=dict(pipeline=[
        dict(type='LoadImage'),
        dict(type='ImageViews', und_size=224, gen_size=1024,
             mode='center_crop'),
    ]))))
# Upstream seeds 4396 (+ rank) for the model and 42 for the data.
randomness = dict(seed=4396)
# Upstream saves every 250 steps after step 1000: here every 250 and the
# last one.
default_hooks = dict(checkpoint=dict(interval=250))
custom_hooks = [
    dict(type='SampleGridHook', interval=250, num_images=4,
         prompts=['a red apple on a wooden table',
                  'a blue car parked left of a yellow house']),
    dict(type='SkippedImagesHook'),
]
