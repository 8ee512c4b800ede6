"""The Frechet distance between Gaussian fits of two feature sets (FID,
and rFID when one set is reconstructions of the other), by torchmetrics'
``FrechetInceptionDistance`` on features computed elsewhere."""
import torch
from torch import nn

from reca_toolkit.evaluation.scorers.base import require_torchmetrics


class _GivenFeatures(nn.Identity):
    """The "feature network" of features that are already computed;
    ``num_features`` spares torchmetrics its probe forward pass."""

    def __init__(self, num_features):
        super().__init__()
        self.num_features = num_features


def frechet_distance(features_a, features_b):
    """FID of two ``[N, D]`` feature sets (N >= 2 each), in float64:
    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with
    ``N - 1``-normalised covariances."""
    fid_module = require_torchmetrics('image.fid', 'rFID')
    a, b = (torch.as_tensor(f, dtype=torch.float64) for f in (features_a,
                                                              features_b))
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or \
            min(len(a), len(b)) < 2:
        raise ValueError('Frechet distance needs two [N, D] feature sets '
                         f'with N >= 2, got {tuple(a.shape)} and '
                         f'{tuple(b.shape)}')
    # Computed on one rank, from features MMEngine already collected.
    fid = fid_module.FrechetInceptionDistance(
        feature=_GivenFeatures(a.shape[1]), sync_on_compute=False)
    fid.update(a, real=True)
    fid.update(b, real=False)
    return float(fid.compute())
