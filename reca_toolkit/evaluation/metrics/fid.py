"""The Frechet distance between Gaussian fits of two feature sets (FID,
and rFID when one set is reconstructions of the other)."""
import torch


def gaussian_stats(features):
    """Mean and covariance (``N - 1`` normalised) of ``[N, D]`` features."""
    x = torch.as_tensor(features, dtype=torch.float64)
    if x.dim() != 2 or len(x) < 2:
        raise ValueError('Frechet distance needs at least 2 feature '
                         f'vectors, got shape {tuple(x.shape)}')
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def _psd_sqrt(matrix):
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    ``Tr((S1 S2)^(1/2))`` is computed as the trace of the square root of
    the symmetric ``S1^(1/2) S2 S1^(1/2)``, which has the same eigenvalues
    and stays real where scipy's ``sqrtm`` of ``S1 S2`` can turn complex.
    """
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(t, dtype=torch.float64)
                                for t in (mu1, mu2, sigma1, sigma2))
    root1 = _psd_sqrt(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0)
    return float(((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace()
                 - 2 * cross.sqrt().sum())
