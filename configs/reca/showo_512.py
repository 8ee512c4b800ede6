# RecA post-training of Show-o-512 (CLIP variant, the paper's Show-o row:
# GenEval 72.3, DPG 84.94) with the RecA authors' recipe
# (HorizonWind2004/reconstruction-alignment, Show-o/configs/
# showo_reca_clip.yaml, training/train_recon_w_clip_vit.py).
#   python tools/train.py configs/reca/showo_512.py
#   bash tools/dist_train.sh configs/reca/showo_512.py 2
# Weights: checkpoints/Show-o-512 (showo/ <- showlab/show-o-w-clip-vit-
#          512x512, phi-1_5/ <- microsoft/phi-1_5, magvitv2/ <-
#          showlab/magvitv2, clip/ <- openai/clip-vit-large-patch14-336).
# Images:  data/reca/images (unlabeled jpg/png/webp, recursive; the authors
#          use MidjourneyV6), and LLaVA conversations in
#          data/llava/llava_v1_5_mix665k.json.
# One iteration is one upstream optimizer step: 10 reconstruction + 10
# image-to-text samples (upstream: 5 accumulated micro-batches of 2 + 2 on
# one GPU). The batch is per GPU: on N GPUs give each 20 / N, e.g.
#   bash tools/dist_train.sh configs/reca/showo_512.py 2 \
#       --cfg-options train_dataloader.batch_size=10
# (the same global batch, the same losses to float precision: DDP here
# averages over the global batch). Upstream runs on one GPU only.
# Check memory first: python tools/analysis_tools/estimate.py THIS_CONFIG
_base_ = [
    '../_base_/models/showo_512.py',
    '../_base_/datasets/showo_reca_llava.py',
    '../_base_/schedules/showo_reca_5k_adamw_bf16.py',
    '../_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=20)
default_hooks = dict(checkpoint=dict(interval=1000))
randomness = dict(seed=10086)  # upstream training.seed
