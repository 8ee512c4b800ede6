"""Multi-source sampling that is exact under DDP and resumes in O(1).

Each source has an infinite stream: epoch ``e`` of a source is a
permutation seeded by ``(seed, source, e)``. Every step the global batch
takes the next ``count * world_size`` positions of each source's stream;
rank ``r`` takes its slice. So the samples of step ``k`` depend only on
``k`` -- not on the world size (for the same global batch), the worker
count or whether the run was resumed -- and a resume jumps straight to step
``k`` instead of replaying ``k`` batches.
"""
import hashlib
import math

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from reca_toolkit.datasets.multi_source import SampleKey
from reca_toolkit.registry import DATA_SAMPLERS


def hash_seed(seed, source, epoch):
    """A stable 63-bit seed (Python's ``hash`` of a str varies per run)."""
    digest = hashlib.sha256(f'{seed}:{source}:{epoch}'.encode()).digest()
    return int.from_bytes(digest[:8], 'little') >> 1


def source_counts(ratios, batch_size):
    """Split ``batch_size`` by ``ratios`` (largest remainder, stable)."""
    total = sum(ratios.values())
    exact = {s: batch_size * r / total for s, r in ratios.items()}
    counts = {s: math.floor(v) for s, v in exact.items()}
    order = sorted(ratios, key=lambda s: counts[s] - exact[s])
    for source in order[:batch_size - sum(counts.values())]:
        counts[source] += 1
    empty = [s for s, c in counts.items() if c == 0 and ratios[s] > 0]
    if empty:
        raise ValueError(
            f'batch_size={batch_size} per GPU cannot hold every source at '
            f'ratios {ratios}: {empty} would get no sample; raise the batch '
            'size or change the ratios')
    return counts


@DATA_SAMPLERS.register_module()
class MultiSourceSampler(Sampler):
    """The per-source sample streams of a ``MultiSourceDataset``.

    Args:
        dataset: the ``MultiSourceDataset``.
        ratios: source -> relative share of every batch; by default every
            source gets an equal share (recon:i2t 1:1, as in the RecA Harmon
            recipe, when both are configured).
        shuffle: permute each source every epoch.
        seed: shared by all ranks; synchronised from rank 0 when None.
    """

    def __init__(self, dataset, ratios=None, shuffle=True, seed=None):
        sizes = {name: len(src) for name, src in dataset.sources.items()}
        ratios = dict(ratios) if ratios is not None else dict.fromkeys(sizes,
                                                                       1)
        unknown = sorted(set(ratios) - set(sizes))
        if unknown:
            raise ValueError(f'ratios name sources {unknown} that the dataset '
                             f'does not have; it has {sorted(sizes)}')
        self.sizes = {s: sizes[s] for s in ratios if ratios[s] > 0}
        self.ratios = {s: ratios[s] for s in self.sizes}
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.rank, self.world_size = get_dist_info()
        self._perm = {}

    def reseed(self, seed):
        self.seed = seed
        self._perm.clear()

    def key(self, source, position):
        """The sample at global stream ``position`` of ``source``."""
        size = self.sizes[source]
        epoch, offset = divmod(position, size)
        if not self.shuffle:
            return SampleKey(source, offset, position)
        if self._perm.get(source, (None, ))[0] != epoch:
            g = torch.Generator().manual_seed(
                hash_seed(self.seed, source, epoch))
            self._perm[source] = (epoch, torch.randperm(size, generator=g))
        return SampleKey(source, int(self._perm[source][1][offset]), position)

    def batch(self, step, counts):
        """This rank's sample keys for ``step``."""
        keys = []
        for source, count in counts.items():
            start = (step * self.world_size + self.rank) * count
            keys += [self.key(source, start + i) for i in range(count)]
        return keys

    def __iter__(self):
        step = 0
        while True:
            yield from self.batch(step, dict.fromkeys(self.sizes, 1))
            step += 1

    def __len__(self):
        return sum(self.sizes.values())


@DATA_SAMPLERS.register_module()
class MultiSourceBatchSampler(Sampler):
    """Batches of ``batch_size`` keys per rank, split between sources by the
    sampler's ratios; infinite; :meth:`set_start_iter` resumes in O(1)."""

    def __init__(self, sampler, batch_size):
        if not isinstance(sampler, MultiSourceSampler):
            raise TypeError('MultiSourceBatchSampler needs '
                            'sampler=dict(type=\'MultiSourceSampler\'), got '
                            f'{type(sampler).__name__}')
        self.sampler = sampler
        self.batch_size = batch_size
        self.counts = source_counts(sampler.ratios, batch_size)
        self.start_iter = 0

    def set_start_iter(self, step):
        self.start_iter = step

    def __iter__(self):
        step = self.start_iter
        while True:
            yield self.sampler.batch(step, self.counts)
            step += 1

    def __len__(self):
        return max(1, len(self.sampler) // (self.batch_size *
                                            self.sampler.world_size))
