# Harmon-0.5B (wusize/harmon: Qwen2.5-0.5B-Instruct + MAR-B over the KL-16
# VAE) from a local folder: config.json + tokenizer of Qwen2.5-0.5B-Instruct,
# kl16.ckpt and harmon_0.5b.pth (or their safetensors). Everything else --
# freezing, dtypes, sampling defaults, objectives -- is Harmon-1.5B's
# (./harmon_1_5b.py); MAR sizes come from the variant (MAR-B, DiffLoss
# 6 x 1024).
_base_ = ['./harmon_1_5b.py']
model = dict(umm=dict(pretrained='checkpoints/Harmon-0.5B', variant='0.5b'))
