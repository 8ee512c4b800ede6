# RecA post-training of Harmon-0.5B with the RecA authors' recipe
# (HorizonWind2004/reconstruction-alignment, Harmon/configs/examples/reca.py
# and datasets/qwen2_5_1_5b/image2text_recon_mid.py, whose batch size is 96
# for 0.5B; the translation of their iterations and gradient accumulation
# into ours is written out in
# configs/_base_/schedules/harmon_reca_2500_adamw_bf16.py).
#   python tools/train.py configs/reca/harmon_0_5b.py
#   bash tools/dist_train.sh configs/reca/harmon_0_5b.py 8
# Weights: checkpoints/Harmon-0.5B (wusize/harmon + Qwen2.5-0.5B-Instruct's
#          config and tokenizer, one local folder).
# Images:  data/reca/images (unlabeled jpg/png/webp, recursive), and LLaVA
#          conversations in data/llava/llava_v1_5_mix665k.json.
# Per GPU and iteration: 96 reconstruction + 96 image-to-text samples, 512 px.
# Check memory first: python tools/analysis_tools/estimate.py THIS_CONFIG
# (42.3 GiB per GPU by the estimate, activation checkpointing on).
_base_ = [
    '../_base_/models/harmon_0_5b.py',
    '../_base_/datasets/harmon_reca_llava.py',
    '../_base_/schedules/harmon_reca_2500_adamw_bf16.py',
    '../_base_/default_runtime.py',
]
samples_per_source = 96  # upstream batch_size for 0.5B
train_dataloader = dict(batch_size=2 * samples_per_source)
# Upstream saves every 1000 of its iterations: 500 of ours.
default_hooks = dict(checkpoint=dict(interval=500))
