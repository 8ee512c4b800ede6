# RecA images from MidjourneyV6 (hub: brivangl/midjourney-v6-llava), the
# authors' Harmon reconstruction data: a dataset repository of parquet
# shards with columns image, prompt, llava, read in place by LocalHFDataset
# (pyarrow: pip install 'reca_toolkit[data]'), row group by row group.
# The authors use the images only (the text is replaced by a
# reconstruction instruction); caption_column='prompt' makes it a
# text-to-image source. Check the images' licence before use. Layout and
# download: docs/data.md. Views as reca_images.py (Janus-Pro).
_base_ = ['./reca_images.py']
data_root = 'data/midjourney-v6-llava'
und_size = 384
gen_size = 384

train_dataloader = dict(dataset=dict(sources=dict(recon=dict(
    _delete_=True,
    type='LocalHFDataset',
    path=data_root,
    split='train',
    image_column='image',
    cache_pieces=2,  # decoded row groups kept per data worker
    pipeline=[
        dict(type='LoadImage'),
        dict(type='ImageViews', und_size=und_size, gen_size=gen_size,
             mode='center_crop'),
    ]))))
