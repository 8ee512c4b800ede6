# Show-o RecA data, as the authors' (HorizonWind2004/reconstruction-
# alignment, Show-o/training/data.py and llava/llava_instruct_data.py):
# unlabeled images (data/reca/images; the authors use MidjourneyV6) resized
# to 512 px ignoring their aspect ratio, one view for understanding (the
# adapter resizes it to CLIP's 336 px) and generation; LLaVA conversations
# for image-to-text, 336 px resized and centre-cropped as CLIPImageProcessor
# does. recon:i2t 1:1. The model config sets the batch size.
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
                dict(type='ImageViews', und_size=336, mode='center_crop'),
            ]))))
