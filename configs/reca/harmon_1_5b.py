# RecA post-training of Harmon-1.5B with the RecA authors' recipe
# (HorizonWind2004/reconstruction-alignment, Harmon/configs/examples/reca.py
# and datasets/qwen2_5_1_5b/image2text_recon_mid.py; the translation of
# their iterations and gradient accumulation into ours is written out in
# configs/_base_/schedules/harmon_reca_2500_adamw_bf16.py).
#   python tools/train.py configs/reca/harmon_1_5b.py
#   bash tools/dist_train.sh configs/reca/harmon_1_5b.py 8
# Weights: checkpoints/Harmon-1.5B (wusize/harmon + Qwen2.5-1.5B-Instruct's
#          config and tokenizer, one local folder).
# Images:  data/reca/images (unlabeled jpg/png/webp, recursive), and LLaVA
#          conversations in data/llava/llava_v1_5_mix665k.json.
# Per GPU and iteration: 48 reconstruction + 48 image-to-text samples, 512 px.
# Check memory first: python tools/analysis_tools/estimate.py THIS_CONFIG
# The estimate is 74.1 GiB per GPU (activation checkpointing on): it fits a
# 141 GB H200, not an 80 GB GPU. There, run 24 + 24 per iteration with twice
# the accumulation and iterations (57.7 GiB; the same optimizer steps,
# samples and LR per sample; upstream's own iteration numbers):
#   --cfg-options train_dataloader.batch_size=48 \
#       optim_wrapper.accumulative_counts=4 train_cfg.max_iters=5000 \
#       param_scheduler.0.end=500 param_scheduler.1.begin=500 \
#       param_scheduler.1.end=50000 default_hooks.checkpoint.interval=1000
_base_ = [
    '../_base_/models/harmon_1_5b.py',
    '../_base_/datasets/harmon_reca_llava.py',
    '../_base_/schedules/harmon_reca_2500_adamw_bf16.py',
    '../_base_/default_runtime.py',
]
samples_per_source = 48  # upstream batch_size for 1.5B
train_dataloader = dict(batch_size=2 * samples_per_source)
# Upstream saves every 1000 of its iterations: 500 of ours.
default_hooks = dict(checkpoint=dict(interval=500))
