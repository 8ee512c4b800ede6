# Show-o RecA data, as the authors' (HorizonWind2004/reconstruction-
# alignment, Show-o/training/data.py and llava/llava_instruct_data.py):
# Harmon's (harmon_reca_llava.py: unlabeled images resized to 512 px
# ignoring their aspect ratio, one view for understanding -- the adapter
# resizes it to CLIP's 336 px -- and generation; LLaVA conversations;
# recon:i2t 1:1), except that the LLaVA images are resized to 336 px and
# centre-cropped, as CLIPImageProcessor does. The authors' unlabeled images
# are MidjourneyV6. The model config sets the batch size.
_base_ = ['./harmon_reca_llava.py']

train_dataloader = dict(dataset=dict(sources=dict(i2t=dict(pipeline=[
    dict(type='LoadImage'),
    dict(type='ImageViews', und_size=336, mode='center_crop'),
]))))
