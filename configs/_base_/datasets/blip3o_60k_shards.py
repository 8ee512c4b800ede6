# RecA images from BLIP3o-60k (hub: BLIP3o/BLIP3o-60k), WebDataset tar
# shards of {key}.jpg + {key}.txt, read in place by TarShards: no
# extraction; each shard's member offsets are indexed once and cached
# beside it (shard.tar.idx.json) or under index_dir. RecA uses the images
# only (the authors' Harmon reconstruction_o3 data); caption_from='txt'
# makes the same shards a captioned source for image-to-text or
# text-to-image. Layout and download: docs/data.md.
# Views as reca_images.py (Janus-Pro, 384 px); for Harmon take 512 px and
# mode='stretch' as harmon_reca_llava.py does.
_base_ = ['./reca_images.py']
data_root = 'data/BLIP3o-60k'
und_size = 384
gen_size = 384

train_dataloader = dict(dataset=dict(sources=dict(recon=dict(
    _delete_=True,
    type='TarShards',
    shards=data_root,  # every .tar below it, sorted by path
    index_dir=None,    # None: beside the shards, else ~/.cache/reca_toolkit
    pipeline=[
        dict(type='LoadImage'),
        dict(type='ImageViews', und_size=und_size, gen_size=gen_size,
             mode='center_crop'),
    ]))))
