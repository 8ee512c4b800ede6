# Unlabeled images for RecA from a local folder (jpg/png/webp, recursive).
# Both views are 384 px for Janus-Pro; und_size is the information
# bottleneck knob. The RecA authors feed the understanding encoder the
# smallest resolution it accepts, so that generation cannot copy pixels
# (HorizonWind2004/reconstruction-alignment:REPRODUCE_GUIDE.md). Janus needs
# no such step: SigLIP features in, VQ codes out are a bottleneck at 384 px.
data_root = 'data/reca/images'
und_size = 384
gen_size = 384

train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='MultiSourceSampler', shuffle=True),
    batch_sampler=dict(type='MultiSourceBatchSampler'),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(
        type='MultiSourceDataset',
        skip_bad_images=False,
        sources=dict(
            recon=dict(
                type='ImageFolder',
                root=data_root,
                pipeline=[
                    dict(type='LoadImage'),
                    dict(type='ImageViews', und_size=und_size,
                         gen_size=gen_size, mode='center_crop'),
                ]))))
