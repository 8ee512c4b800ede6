"""Write a training source's frozen-encoder outputs to a feature cache: what
``tools/misc/cache_features.py`` runs (format:
:mod:`reca_toolkit.datasets.feature_cache`)."""
import contextlib

import torch
from mmengine.runner import load_checkpoint, set_random_seed
from torch.utils.data import DataLoader

from reca_toolkit.datasets.feature_cache import FeatureCacheWriter
from reca_toolkit.registry import DATASETS, MODELS


def _autocast(cfg, device):
    """Training's autocast, so cached features are the ones training would
    compute."""
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') != 'AmpOptimWrapper':
        return contextlib.nullcontext()
    return torch.autocast(device.type,
                          getattr(torch, wrapper.get('dtype') or 'float16'))


def cache_features(cfg, out_dir, source='recon', checkpoint=None,
                   batch_size=16, shard_size=1024, num_workers=0,
                   device=None):
    """Cache ``und_features`` and ``gen_targets`` of every sample of the
    training source ``source``, in index order.

    The source's pipeline must be deterministic (no random crops): each
    sample is cached once and read back at every epoch.
    """
    sources = cfg.train_dataloader.dataset.sources
    if source not in sources:
        raise KeyError(f"train_dataloader.dataset.sources has no '{source}'"
                       f'; it has {sorted(sources)}')
    device = torch.device(device or ('cuda' if torch.cuda.is_available()
                                     else 'cpu'))
    seed = (cfg.get('randomness') or {}).get('seed')
    if seed is not None:
        # As the Runner does before it builds the model: a randomly
        # initialised model then caches the features its training sees.
        set_random_seed(seed)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu')
    model.to(device).eval()
    dataset = DATASETS.build(sources[source])

    def collate(samples):
        batch = {k: torch.stack([s[k] for s in samples])
                 for k in ('und_pixels', 'gen_pixels')}
        return dict(inputs={source: batch})

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate)
    writer = FeatureCacheWriter(out_dir, shard_size, dict(
        config=cfg.filename, source=source, checkpoint=checkpoint))
    with torch.no_grad(), _autocast(cfg, device):
        for data in loader:
            batch = model.data_preprocessor(data)['inputs'][source]
            writer.add(model.umm.understanding_features(batch['und_pixels']),
                       model.umm.generation_targets(batch['gen_pixels']))
    return writer.close()
