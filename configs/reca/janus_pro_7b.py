# RecA post-training of Janus-Pro-7B (checkpoints/Janus-Pro-7B).
# Full-parameter AdamW on 6.6 B trainable parameters needs about 105 GB of
# weights, gradients and optimizer state: shard it across GPUs
# (janus_pro_7b_fsdp.py) or train LoRA adapters (janus_pro_7b_lora.py).
_base_ = [
    '../_base_/models/janus_pro_7b.py',
    '../_base_/datasets/reca_images.py',
    '../_base_/schedules/reca_5k_adamw_bf16.py',
    '../_base_/default_runtime.py',
]
model = dict(umm=dict(gradient_checkpointing=True))
train_dataloader = dict(batch_size=4)
