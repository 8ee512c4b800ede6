"""Reconstruction metrics against reference formulas written out here."""
import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader

from reca_toolkit.datasets import HeldOutImages, collate_by_source
from reca_toolkit.evaluation import ReconstructionMetric
from reca_toolkit.evaluation.metrics import (frechet_distance,
                                             gaussian_stats, psnr, ssim)
from reca_toolkit.evaluation.scorers import LPIPS, lpips_distance


def images(seed, n=3, size=24):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g).double()


def reference_psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))


def gaussian_filter(x, sigma=1.5, truncate=3.5):
    """scipy.ndimage.gaussian_filter on a 2-D array, mode 'reflect'."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    for axis in (0, 1):
        padded = np.pad(x, [(radius, radius) if a == axis else (0, 0)
                            for a in (0, 1)], mode='symmetric')
        out = np.zeros_like(x)
        for w, o in zip(weights, offsets):
            out += w * np.take(padded, np.arange(x.shape[axis]) + o + radius,
                               axis=axis)
        x = out
    return x


def reference_ssim(a, b, data_range=255.0):
    """skimage.metrics.structural_similarity(a, b, channel_axis=0,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255): per channel, Gaussian moments, the SSIM map cropped by
    the window radius (5), then the mean over channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for x, y in zip(a, b):
        ux, uy = gaussian_filter(x), gaussian_filter(y)
        vx = gaussian_filter(x * x) - ux * ux
        vy = gaussian_filter(y * y) - uy * uy
        vxy = gaussian_filter(x * y) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / (
            (ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        values.append(s[5:-5, 5:-5].mean())
    return np.mean(values)


def test_psnr_and_ssim_match_the_reference_formulas():
    a, b = images(0), images(1)
    b[1] = (a[1] + torch.randn(3, 24, 24) * 20).clamp(0, 255).round()
    for i in range(3):
        x, y = a[i].numpy(), b[i].numpy()
        assert float(psnr(a, b)[i]) == pytest.approx(reference_psnr(x, y),
                                                     rel=1e-10)
        assert float(ssim(a, b)[i]) == pytest.approx(reference_ssim(x, y),
                                                     abs=1e-10)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0)


def test_lpips_distance_matches_an_explicit_sum():
    g = torch.Generator().manual_seed(0)
    fx = [torch.randn(2, 4, 5, 5, generator=g),
          torch.randn(2, 3, 2, 2, generator=g)]
    fy = [torch.randn_like(f) for f in fx]
    weights = [torch.rand(4, generator=g), torch.rand(3, generator=g)]
    expected = np.zeros(2)
    for x, y, w in zip(fx, fy, weights):
        x, y, w = x.double().numpy(), y.double().numpy(), w.double().numpy()
        for n in range(2):
            per_pixel = []
            for i in range(x.shape[2]):
                for j in range(x.shape[3]):
                    u = x[n, :, i, j] / (np.linalg.norm(x[n, :, i, j]) + 1e-10)
                    v = y[n, :, i, j] / (np.linalg.norm(y[n, :, i, j]) + 1e-10)
                    per_pixel.append(np.sum(w * (u - v) ** 2))
            expected[n] += np.mean(per_pixel)
    assert lpips_distance(fx, fy, weights).numpy() == pytest.approx(expected)


def test_frechet_distance_matches_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == \
        pytest.approx(4 + 1)
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    # Tr((S1 S2)^(1/2)) = sum of the square roots of S1 S2's eigenvalues
    cross = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - \
        2 * cross
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected)
    x = rng.normal(size=(50, 5))
    assert frechet_distance(*gaussian_stats(x), *gaussian_stats(x)) == \
        pytest.approx(0, abs=1e-8)
    with pytest.raises(ValueError, match='at least 2'):
        gaussian_stats(x[:1])


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        f1 = torch.relu(self.a(x))
        return [f1, torch.relu(self.b(f1))]


class Pooled(TinyBackbone):
    def forward(self, x):
        return [super().forward(x)[1].mean((2, 3))]


@pytest.fixture
def heads(tmp_path):
    path = tmp_path / 'heads.safetensors'
    save_file({'lin0.model.1.weight': torch.rand(1, 4, 1, 1),
               'lin1.model.1.weight': torch.rand(1, 6, 1, 1)}, str(path))
    return str(path)


def test_reconstruction_metric_over_held_out_images(tiny_model, heads):
    dataset = HeldOutImages(dict(
        type='ShapeScenes', num_scenes=5, seed=999, captioned=False,
        pipeline=[dict(type='LoadImage'),
                  dict(type='ImageViews', und_size=64, gen_size=64)]))
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_by_source,
                        sampler=DefaultSampler(dataset, shuffle=False))
    assert len(list(loader)) == 3  # finite: each image once
    metric = ReconstructionMetric(
        lpips=LPIPS(TinyBackbone(), heads), fid_features=Pooled())
    for batch in loader:
        data = tiny_model.data_preprocessor(batch)
        metric.process(batch, tiny_model(**data, mode='predict'))
    scores = metric.evaluate(len(dataset))
    assert set(scores) == {'recon/psnr', 'recon/ssim', 'recon/lpips',
                           'recon/rfid'}
    assert all(np.isfinite(v) for v in scores.values())
    assert scores['recon/lpips'] > 0 and scores['recon/rfid'] > 0


def test_a_perfect_reconstruction_scores_perfectly(heads):
    target = images(3, n=4) / 127.5 - 1
    samples = [dict(pred=t, gen_pixels=torch.round((t + 1) * 127.5).to(
        torch.uint8).float() / 127.5 - 1) for t in target]
    metric = ReconstructionMetric(lpips=LPIPS(TinyBackbone(), heads),
                                  fid_features=Pooled())
    metric.process(None, samples)
    scores = metric.evaluate(4)
    assert scores['recon/ssim'] == pytest.approx(1.0)
    assert scores['recon/lpips'] == pytest.approx(0.0, abs=1e-12)
    assert scores['recon/rfid'] == pytest.approx(0.0, abs=1e-6)
    assert scores['recon/psnr'] == float('inf')
