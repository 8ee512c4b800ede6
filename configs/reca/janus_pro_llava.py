# Janus-Pro-1B RecA with image-to-text co-training, recon:i2t 1:1 (Janus
# shares parameters between understanding and generation, so the RecA
# authors keep understanding data in the mix).
# i2t data: LLaVA-style conversations, e.g. llava_v1_5_mix665k.json, with
# image paths relative to data/llava.
_base_ = ['./janus_pro.py']

train_dataloader = dict(
    sampler=dict(ratios=dict(recon=1, i2t=1)),
    dataset=dict(sources=dict(
        i2t=dict(
            type='CaptionedImages',
            ann_file='data/llava/llava_v1_5_mix665k.json',
            data_root='data/llava',
            pipeline=[
                dict(type='LoadImage'),
                dict(type='ImageViews', und_size=384, mode='pad'),
            ]))))
