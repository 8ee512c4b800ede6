"""Several named sources behind one dataset, and the collate that keeps
their batches apart."""
from typing import NamedTuple

import torch
from mmengine.logging import print_log
from torch.utils.data import Dataset

from reca_toolkit.datasets.transforms.loading import ImageLoadError
from reca_toolkit.registry import DATASETS, FUNCTIONS


class SampleKey(NamedTuple):
    """What the sampler yields: a source, an index into it, and the
    sample's position in that source's global stream."""
    source: str
    index: int
    draw: int


@DATASETS.register_module()
class MultiSourceDataset(Dataset):
    """Named sources, indexed by :class:`SampleKey`.

    Args:
        sources: name -> source config (``ImageFolder``,
            ``CaptionedImages``, ``ShapeScenes``, ...). Objectives read the
            source of their name.
        skip_bad_images: if True, an image that fails to load is replaced by
            the next one of its source and the skip is logged and counted
            (``skipped`` in the batch, ``data/skipped_images`` in the log);
            if False (the default) it stops training, naming the file.
    """

    def __init__(self, sources, skip_bad_images=False):
        if not sources:
            raise ValueError('MultiSourceDataset needs at least one source')
        self.sources = {name: DATASETS.build(cfg)
                        for name, cfg in sources.items()}
        self.skip_bad_images = skip_bad_images
        self.metainfo = dict(sources={n: len(s)
                                      for n, s in self.sources.items()})

    def __len__(self):
        return sum(len(s) for s in self.sources.values())

    def __getitem__(self, key):
        sample, skipped = self.load(key.source, key.index, key.draw)
        sample.update(source=key.source, skipped=skipped)
        return sample

    def load(self, source, index, draw):
        """Sample ``index`` of ``source`` under the one skip policy
        (``skip_bad_images``) of the training data, which anything else
        that reads training images (``SampleGridHook``) goes through too.

        Returns ``(sample, skipped)``: with skipping, the sample is that of
        index ``(index + skipped) % len(source)``.
        """
        images, skipped = self.sources[source], 0
        while True:
            try:
                return images.prepare((index + skipped) % len(images),
                                      draw), skipped
            except ImageLoadError as e:
                if not self.skip_bad_images:
                    raise
                skipped += 1
                print_log(f'skipped ({skipped} for this sample): {e}',
                          logger='current', level=30)
                if skipped >= len(images):
                    raise RuntimeError(
                        f"no image of source '{source}' loads") from e


def _stack(values):
    if isinstance(values[0], torch.Tensor):
        # Aspect-kept views (AspectViews) differ in shape: a list.
        if any(v.shape != values[0].shape for v in values):
            return list(values)
        return torch.stack(values)
    if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
        return torch.tensor(values)
    return list(values)


@FUNCTIONS.register_module()
def collate_by_source(samples):
    """Samples -> ``dict(inputs={source: batch}, data_samples=...)``.

    Each source's samples become one batch: tensors stacked (a list where
    their shapes differ), numbers as a tensor, anything else (captions,
    conversations, paths) as a list.
    """
    grouped = {}
    for sample in samples:
        grouped.setdefault(sample.pop('source'), []).append(sample)
    skipped = sum(s.pop('skipped', 0) for g in grouped.values() for s in g)
    inputs = {source: {key: _stack([s[key] for s in group])
                       for key in group[0]}
              for source, group in grouped.items()}
    return dict(inputs=inputs, data_samples=dict(skipped=skipped))
