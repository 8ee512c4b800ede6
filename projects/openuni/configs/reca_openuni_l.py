# RecA post-training of OpenUni-L (InternVL3-2B + SANA 1.6B 512 px + DC-AE
# f32c32) with the RecA authors' recipe (their OpenUni/configs/finetune/
# reca_2_1.6.py): as reca_openuni_b.py, with 16-step gradient accumulation
# and the cosine over 5000 iterations (warm-up 50).
#   python tools/train.py projects/openuni/configs/reca_openuni_l.py
# Weights (projects/openuni/README.md):
#   checkpoints/openuni/
#     openuni_l_internvl3_2b_sana_1_6b_512_hf_text2image23m.pth
#   checkpoints/InternVL3-2B-hf
#   checkpoints/Sana_1600M_512px_diffusers
#   checkpoints/dc-ae-f32c32-sana-1.1-diffusers
# Memory (tools/analysis_tools/estimate.py, architecture only): at 42 per
# GPU without activation checkpointing (upstream's setting) a step needs
# about 126 GiB; on 80 GiB GPUs add
# --cfg-options model.umm.gradient_checkpointing=True (about 38 GiB at 42
# per GPU: the frozen LLM, which the meta-queries' gradient crosses, the
# connector and SANA recompute their layers in the backward).
_base_ = ['./reca_openuni_b.py']
cosine_end = 5000
warmup_iters = cosine_end // 100  # 1%

model = dict(umm=dict(
    variant='l',
    weights=dict(
        checkpoint='checkpoints/openuni/openuni_l_internvl3_2b_sana_1_6b_'
                   '512_hf_text2image23m.pth',
        internvl='checkpoints/InternVL3-2B-hf',
        sana='checkpoints/Sana_1600M_512px_diffusers')))
optim_wrapper = dict(accumulative_counts=16)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=cosine_end),
]
