"""Reconstruction metrics (torchmetrics) against reference formulas
written out here, on the same inputs and the same backbone weights."""
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchmetrics
import torchvision
from mmengine.dataset import DefaultSampler
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader

from reca_toolkit.datasets import HeldOutImages, collate_by_source
from reca_toolkit.evaluation import ReconstructionMetric
from reca_toolkit.evaluation.metrics import frechet_distance, psnr, ssim
from reca_toolkit.evaluation.scorers import LPIPS
from reca_toolkit.evaluation.scorers.base import load_state_dict

ALEXNET_RELUS = (1, 4, 7, 9, 11)  # the features LPIPS compares


def images(seed, n=3, size=24):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g).double()


def reference_psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))


def gaussian_filter(x, sigma=1.5, truncate=3.5):
    """Separable Gaussian blur of a 2-D array over its reflect-padded
    (edge not repeated) borders, output the input's size."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    for axis in (0, 1):
        padded = np.pad(x, [(radius, radius) if a == axis else (0, 0)
                            for a in (0, 1)], mode='reflect')
        out = np.zeros_like(x)
        for w, o in zip(weights, offsets):
            out += w * np.take(padded, np.arange(x.shape[axis]) + o + radius,
                               axis=axis)
        x = out
    return x


def reference_ssim(a, b, data_range=255.0):
    """SSIM as torchmetrics >= 1.5 defines it: per channel, Gaussian
    moments (sigma 1.5, 11 taps) of the reflect-padded image, variances
    clamped at 0, the mean of the whole map, then over channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for x, y in zip(a, b):
        ux, uy = gaussian_filter(x), gaussian_filter(y)
        vx = np.maximum(gaussian_filter(x * x) - ux * ux, 0)
        vy = np.maximum(gaussian_filter(y * y) - uy * uy, 0)
        vxy = gaussian_filter(x * y) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / (
            (ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        values.append(s.mean())
    return np.mean(values)


def test_psnr_and_ssim_match_the_reference_formulas():
    a, b = images(0), images(1)
    b[1] = (a[1] + torch.randn(3, 24, 24) * 20).clamp(0, 255).round()
    for i in range(3):
        x, y = a[i].numpy(), b[i].numpy()
        # torchmetrics takes log(10) and log(data_range) in float32
        assert float(psnr(a, b)[i]) == pytest.approx(reference_psnr(x, y),
                                                     rel=1e-6)
        assert float(ssim(a, b)[i]) == pytest.approx(reference_ssim(x, y),
                                                     abs=1e-10)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0)


@pytest.fixture(scope='module')
def alexnet(tmp_path_factory):
    """A torchvision AlexNet's ``features`` (random, seeded) and the file
    they are saved in: the same weights go into the scorer and into the
    reference below."""
    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features
    path = tmp_path_factory.mktemp('lpips') / 'alexnet.safetensors'
    save_file({f'features.{k}': v for k, v in features.state_dict().items()},
              str(path))
    return features, str(path)


@pytest.fixture(scope='module')
def alexnet_file(alexnet):
    return alexnet[1]


@pytest.fixture(scope='module')
def lpips(alexnet_file):
    return LPIPS(alexnet_file)


def reference_lpips(x, y, features, heads_file):
    """LPIPS written out: LPIPS's input scaling, AlexNet's five ReLU maps,
    each unit-normalised over channels (sqrt(sum + 1e-8)), the squared
    difference weighted by the head, summed over channels, averaged over
    space, summed over layers."""
    heads = load_state_dict(heads_file)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    fx, fy, total = (x - shift) / scale, (y - shift) / scale, 0
    with torch.no_grad():
        for n, layer in enumerate(features[:ALEXNET_RELUS[-1] + 1]):
            fx, fy = layer(fx), layer(fy)
            if n in ALEXNET_RELUS:
                head = heads[f'lin{ALEXNET_RELUS.index(n)}.model.1.weight']
                u = fx.double() / (fx.double().pow(2).sum(1, True) +
                                   1e-8).sqrt()
                v = fy.double() / (fy.double().pow(2).sum(1, True) +
                                   1e-8).sqrt()
                total = total + ((u - v) ** 2 * head.double().view(
                    1, -1, 1, 1)).sum(1).mean((1, 2))
    return total


def test_lpips_is_torchmetrics_with_the_local_backbone(lpips, alexnet):
    g = torch.Generator().manual_seed(0)
    x, y = (torch.rand(2, 3, 64, 64, generator=g) * 2 - 1 for _ in 'xy')
    expected = reference_lpips(x, y, alexnet[0], lpips.heads)
    assert lpips(x, y).double().numpy() == pytest.approx(expected.numpy(),
                                                         rel=1e-4)
    assert Path(lpips.heads).parent.name == 'lpips_models'
    assert lpips.info()['torchmetrics'] == torchmetrics.__version__


def test_lpips_never_downloads_and_names_what_is_missing(
        alexnet_file, tmp_path, monkeypatch):
    def no_network(*args):
        raise AssertionError('LPIPS tried to reach the network')
    monkeypatch.setattr(socket.socket, 'connect', no_network)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_network)
    with pytest.raises(FileNotFoundError, match='nothing is downloaded'):
        LPIPS(tmp_path / 'absent.pth')
    partial = tmp_path / 'partial.safetensors'
    state = load_state_dict(alexnet_file)
    save_file({k: v for k, v in state.items() if k != 'features.10.weight'},
              str(partial))
    with pytest.raises(ValueError, match=r"lacks \['features.10.weight'\]"):
        LPIPS(partial)


def test_frechet_distance_matches_closed_forms():
    # 1-D, N - 1 normalised: means 2 and 1, variances 2 and 2
    assert frechet_distance([[1.0], [3.0]], [[0.0], [2.0]]) == \
        pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(30, 5)) * 2 + 1
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((S1 S2)^(1/2)) = sum of the square roots of S1 S2's eigenvalues
    cross = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - \
        2 * cross
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    with pytest.raises(ValueError, match='N >= 2'):
        frechet_distance(a, b[:1])


class Pooled(nn.Module):
    """A small pooled-feature network standing in for Inception."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)

    def forward(self, x):
        return [torch.relu(self.conv(x)).mean((2, 3))]


def test_reconstruction_metric_over_held_out_images(tiny_model, lpips):
    dataset = HeldOutImages(dict(
        type='ShapeScenes', num_scenes=5, seed=999, captioned=False,
        pipeline=[dict(type='LoadImage'),
                  dict(type='ImageViews', und_size=64, gen_size=64)]))
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_by_source,
                        sampler=DefaultSampler(dataset, shuffle=False))
    assert len(list(loader)) == 3  # finite: each image once
    metric = ReconstructionMetric(lpips=lpips, fid_features=Pooled())
    for batch in loader:
        data = tiny_model.data_preprocessor(batch)
        metric.process(batch, tiny_model(**data, mode='predict'))
    scores = metric.evaluate(len(dataset))
    assert set(scores) == {'recon/psnr', 'recon/ssim', 'recon/lpips',
                           'recon/rfid'}
    assert all(np.isfinite(v) for v in scores.values())
    assert scores['recon/lpips'] > 0 and scores['recon/rfid'] > 0


def test_a_perfect_reconstruction_scores_perfectly(lpips):
    target = images(3, n=4, size=64) / 127.5 - 1
    samples = [dict(pred=t, gen_pixels=torch.round((t + 1) * 127.5).to(
        torch.uint8).float() / 127.5 - 1) for t in target]
    metric = ReconstructionMetric(lpips=lpips, fid_features=Pooled())
    metric.process(None, samples)
    scores = metric.evaluate(4)
    assert scores['recon/ssim'] == pytest.approx(1.0)
    assert scores['recon/lpips'] == pytest.approx(0.0, abs=1e-12)
    assert scores['recon/rfid'] == pytest.approx(0.0, abs=1e-6)
    assert scores['recon/psnr'] == float('inf')


def test_without_torchmetrics_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torchmetrics.functional.image', None)
    with pytest.raises(ImportError, match=r"reca_toolkit\[eval\]"):
        ssim(images(0), images(1))
