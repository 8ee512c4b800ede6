# Harmon RecA data, as the authors' image2text_recon_mid.py: unlabeled images
# (data/reca/images) for reconstruction plus LLaVA conversations for
# image-to-text, recon:i2t 1:1, both at 512 px. Reconstruction images are
# resized to a square ignoring their aspect ratio (upstream crop_image=False);
# LLaVA images are padded to a square on grey first (upstream MARProcessor:
# expand2square, then resize). The model config sets the batch size.
# i2t data: LLaVA-style conversations, e.g. llava_v1_5_mix665k.json, with
# image paths relative to data/llava.
_base_ = ['./reca_images.py']
und_size = 512
gen_size = 512

train_dataloader = dict(
    sampler=dict(ratios=dict(recon=1, i2t=1)),
    dataset=dict(sources=dict(
        recon=dict(pipeline=[
            dict(type='LoadImage'),
            dict(type='ImageViews', und_size=und_size,
                 gen_size=gen_size, mode='stretch'),
        ]),
        i2t=dict(
            type='CaptionedImages',
            ann_file='data/llava/llava_v1_5_mix665k.json',
            data_root='data/llava',
            pipeline=[
                dict(type='LoadImage'),
                dict(type='ImageViews', und_size=und_size, mode='pad'),
            ]))))
