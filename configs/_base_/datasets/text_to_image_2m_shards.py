# RecA images from text-to-image-2M's data_1024_10K (hub:
# jackyhate/text-to-image-2M; 10k pairs at 1024 px, {key}.jpg + {key}.json),
# the example of BAGEL's RecA recipe, read in place by TarShards. Images
# only, as the authors use it; caption_from='json' with caption_field set to
# the prompt's field (check one .json member) makes it a captioned source.
# Layout and download: docs/data.md. Views as reca_images.py (Janus-Pro).
_base_ = ['./reca_images.py']
data_root = 'data/text-to-image-2M/data_1024_10K'
und_size = 384
gen_size = 384

train_dataloader = dict(dataset=dict(sources=dict(recon=dict(
    _delete_=True,
    type='TarShards',
    shards=data_root,
    pipeline=[
        dict(type='LoadImage'),
        dict(type='ImageViews', und_size=und_size, gen_size=gen_size,
             mode='center_crop'),
    ]))))
