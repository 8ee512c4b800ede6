"""The base class of data sources: a list of samples plus their pipeline."""
from torch.utils.data import Dataset

from reca_toolkit.registry import TRANSFORMS


class Source(Dataset):
    """A source lists raw samples; its pipeline turns one into tensors.

    Subclasses implement ``__len__`` and :meth:`raw`. ``draw`` -- the
    sample's position in its source's global stream -- is passed down the
    pipeline so that any random transform can seed itself from it.
    """

    def __init__(self, pipeline=()):
        self.pipeline = [TRANSFORMS.build(t) if isinstance(t, dict) else t
                         for t in pipeline]

    def raw(self, index):
        raise NotImplementedError

    def prepare(self, index, draw):
        results = dict(self.raw(index), draw=draw)
        for transform in self.pipeline:
            results = transform(results)
        return results

    def __getitem__(self, index):
        return self.prepare(index, draw=index)
