"""Batches shaped like a config's training batches, from no data on disk."""
import copy

from mmengine.runner import Runner


def synthetic_dataloader_cfg(cfg, batch_size=None):
    """``cfg.train_dataloader`` with each source replaced by
    :class:`~reca_toolkit.datasets.SyntheticImages` that runs the source's own
    pipeline, a fixed sampler seed and no worker processes."""
    loader = copy.deepcopy(cfg.train_dataloader.to_dict()
                           if hasattr(cfg.train_dataloader, 'to_dict')
                           else dict(cfg.train_dataloader))
    sources = loader['dataset'].get('sources')
    if sources is None:
        raise ValueError('train_dataloader.dataset has no sources; '
                         'synthetic batches need a MultiSourceDataset')
    for name, source in sources.items():
        if not source.get('pipeline'):
            raise ValueError(
                f'train_dataloader.dataset.sources.{name} ({source["type"]}) '
                'has no image pipeline to feed synthetic images through')
        sources[name] = dict(type='SyntheticImages',
                             pipeline=source['pipeline'])
    loader['sampler'] = dict(loader['sampler'], seed=0)
    loader.update(num_workers=0, persistent_workers=False, pin_memory=False)
    if batch_size is not None:
        loader['batch_size'] = batch_size
    return loader


def synthetic_batches(cfg, num_batches, batch_size=None):
    """``num_batches`` collated training batches of synthetic images."""
    loader = Runner.build_dataloader(
        synthetic_dataloader_cfg(cfg, batch_size), seed=0)
    batches = iter(loader)
    return [next(batches) for _ in range(num_batches)]
