"""Several evaluation sets in one validation or test loop."""
from torch.utils.data import ConcatDataset

from reca_toolkit.registry import DATASETS


@DATASETS.register_module()
class EvalSets(ConcatDataset):
    """The samples of several evaluation datasets one after another, each
    with its own ``source``, so that each metric of a list evaluator scores
    its own (the metrics' ``source=``): GenEval-Shapes prompts and held-out
    image-to-text scenes in one validation watch generation and
    understanding together. MMEngine's ``ConcatDataset`` takes only its own
    ``BaseDataset`` subclasses, with equal metainfo.

    Args:
        datasets: dataset configs.
    """

    def __init__(self, datasets):
        super().__init__([DATASETS.build(d) for d in datasets])

    @property
    def metainfo(self):
        return dict(sets=[getattr(d, 'metainfo', None)
                          for d in self.datasets])
