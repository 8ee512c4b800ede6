"""A source's frozen-encoder outputs on disk, read back as a source.

When the frozen parts of a UMM's understanding encoder and generation
tokenizer never change, neither do their outputs for an image. Caching them
once (``tools/misc/cache_features.py``) spares every training step the image
decoding and those encoders (Janus-Pro: SigLIP and the VQ encoder, about 7%
of a 1B step's FLOPs, at about 1.2 MB of disk per 384 px image; Harmon: the
KL-16 VAE encoder of both views).

Layout of a cache folder: ``shard-00000.safetensors``, ... each holding
``und_features`` ``[n, ...]`` (``BaseUMM.understanding_features``: SigLIP's
output before the trainable aligner, or VAE latents) and ``gen_targets``
``[n, ...]`` (``BaseUMM.generation_targets``: VQ codes, stored as int32, or
latents), and ``meta.json``, written last, so that a folder without it is
an unfinished cache. Every sample of a cache has the same shapes.
"""
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from reca_toolkit.datasets.source import Source
from reca_toolkit.registry import DATASETS

META_FILE = 'meta.json'
KEYS = ('und_features', 'gen_targets')


def shard_name(index):
    return f'shard-{index:05d}.safetensors'


class FeatureCacheWriter:
    """Appends batches of features and writes them out in shards."""

    def __init__(self, root, shard_size, description):
        self.root = Path(root)
        if (self.root / META_FILE).exists():
            raise FileExistsError(f"feature cache '{self.root}' exists")
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.description = description
        self.pending = {key: [] for key in KEYS}
        self.num_pending = self.num_samples = self.num_shards = 0

    def add(self, und_features, gen_targets):
        self.pending['und_features'] += list(und_features.cpu())
        if not gen_targets.is_floating_point():
            gen_targets = gen_targets.int()
        self.pending['gen_targets'] += list(gen_targets.cpu())
        self.num_pending += len(und_features)
        while self.num_pending >= self.shard_size:
            self._write(self.shard_size)

    def _write(self, count):
        tensors = {key: torch.stack(values[:count]).contiguous()
                   for key, values in self.pending.items()}
        for values in self.pending.values():
            del values[:count]
        path = self.root / shard_name(self.num_shards)
        tmp = path.with_suffix('.tmp')
        save_file(tensors, str(tmp))
        tmp.rename(path)
        self.num_pending -= count
        self.num_samples += count
        self.num_shards += 1

    def close(self):
        if self.num_pending:
            self._write(self.num_pending)
        meta = dict(num_samples=self.num_samples,
                    shard_size=self.shard_size, num_shards=self.num_shards,
                    **self.description)
        (self.root / META_FILE).write_text(json.dumps(meta, indent=2))
        return meta


@DATASETS.register_module()
class FeatureCache(Source):
    """A feature cache as a source: samples hold ``und_features`` and
    ``gen_targets`` instead of pixels, in the order of the source they were
    cached from, so the sampler draws the same samples as it would from it.

    Args:
        root: the cache folder.
    """

    def __init__(self, root):
        super().__init__(pipeline=())
        self.root = Path(root)
        self.meta = self.read_meta(self.root)
        self._shards = {}

    @staticmethod
    def read_meta(root):
        path = Path(root) / META_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"feature cache '{root}' has no {META_FILE}: it does not "
                'exist or was not finished; write it with '
                'tools/misc/cache_features.py')
        return json.loads(path.read_text())

    @classmethod
    def validate_config(cls, cfg):
        cls.read_meta(cfg['root'])

    def __len__(self):
        return self.meta['num_samples']

    def raw(self, index):
        shard, row = divmod(index, self.meta['shard_size'])
        if shard not in self._shards:
            # Opened in the worker that reads it; memory-mapped.
            self._shards[shard] = safe_open(
                str(self.root / shard_name(shard)), 'pt')
        handle = self._shards[shard]
        return {key: handle.get_slice(key)[row] for key in KEYS}
