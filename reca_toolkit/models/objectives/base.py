"""The objective base class: one weighted loss over a UMM, read from one
data source."""
import random

from torch import nn


class Objective(nn.Module):
    """A training objective written against the UMM interface.

    Args:
        weight: multiplies the loss; 0 skips the objective entirely.
        source: the data source whose batches it reads (defaults to the
            objective's name in ``RecAModel.objectives``).
        seed: seeds the per-sample choices (instructions, dropout).

    Per-sample random choices come from :meth:`rng` keyed by the sample's
    ``draw`` -- its position in the source's global sample stream -- so they
    are the same at any world size, worker count or after a resume.
    """

    def __init__(self, weight=1.0, source=None, seed=0):
        super().__init__()
        self.weight = weight
        self.source = source
        self.seed = seed

    def rng(self, draw):
        return random.Random(f'{type(self).__name__}:{self.seed}:{int(draw)}')

    def generation_seeds(self, draws):
        """One seed per sample for the UMM's own random choices in
        ``generation_loss`` (mask ratios, orders, timesteps, noise), apart
        from the stream that picks instructions and dropout."""
        return [random.Random(f'{type(self).__name__}:{self.seed}:'
                              f'{int(d)}:generation').getrandbits(63)
                for d in draws]

    def loss(self, umm, batch):
        """Return a dict with ``loss`` and any scalars worth logging."""
        raise NotImplementedError
