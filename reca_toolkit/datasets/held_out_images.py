"""A finite, ordered view of any image source, for evaluation loops.

Training sources are read through the infinite multi-source sampler; an
evaluation needs each held-out image exactly once, in order, under
MMEngine's ``DefaultSampler``. This wraps one source (``ImageFolder``,
``ShapeScenes``, ...) and tags its samples with the data-source name the
model and metrics read, the image's index and its sampling seed.
"""
import hashlib

from torch.utils.data import Dataset

from reca_toolkit.registry import DATASETS


@DATASETS.register_module()
class HeldOutImages(Dataset):
    """Args:
        source: a source config; its pipeline makes ``und_pixels`` (and
            ``gen_pixels`` for reconstruction).
        name: the data-source name (``recon`` for ``ReconstructionMetric``;
            image-to-text sources, whose samples hold ``conversations``,
            are answered and scored by ``DescriptionAccuracyMetric``).
        seed: the sampling seed of every reconstruction.
    """

    def __init__(self, source, name='recon', seed=0):
        self.source_cfg = source
        self.source = DATASETS.build(source)
        self.name = name
        self.seed = seed

    @property
    def metainfo(self):
        return dict(source=self.name, num_images=len(self))

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        return dict(self.source.prepare(index, draw=index), source=self.name,
                    index=index, seed=self.seed)

    def data_sha256(self):
        """The hash of the image files' bytes for a folder source; None for
        sources generated in code (their config says it all)."""
        files = getattr(self.source, 'files', None)
        if files is None:
            return None
        from reca_toolkit.evaluation.scorers.base import file_sha256
        digest = hashlib.sha256()
        for path in files:
            digest.update(f'{path}:{file_sha256(path)}\n'.encode())
        return digest.hexdigest()

    def card_info(self):
        return dict(dataset=type(self).__name__, source=self.name,
                    num_images=len(self), seed=self.seed,
                    images=self.source_cfg, data_sha256=self.data_sha256())
