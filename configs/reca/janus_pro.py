# RecA post-training of Janus-Pro-1B.
#   python tools/train.py configs/reca/janus_pro.py
#   bash tools/dist_train.sh configs/reca/janus_pro.py 8
# Weights: checkpoints/Janus-Pro-1B (transformers layout, local folder).
# Images:  data/reca/images (any unlabeled jpg/png/webp, recursive).
# 16 images per GPU; add image-to-text data with janus_pro_llava.py.
_base_ = [
    '../_base_/models/janus_pro_1b.py',
    '../_base_/datasets/reca_images.py',
    '../_base_/schedules/reca_5k_adamw_bf16.py',
    '../_base_/default_runtime.py',
]
