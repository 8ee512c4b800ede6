# tiny_reca.py training its reconstruction source from a feature cache
# (tools/misc/cache_features.py); set the cache folder with
#   --cfg-options train_dataloader.dataset.sources.recon.root=DIR
_base_ = ['./tiny_reca.py']

train_dataloader = dict(dataset=dict(sources=dict(recon=dict(
    _delete_=True, type='FeatureCache', root='data/reca/features'))))
