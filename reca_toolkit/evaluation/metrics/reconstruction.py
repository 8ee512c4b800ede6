"""Reconstruction fidelity of reconstructions vs inputs: PSNR, SSIM, and
LPIPS / rFID with their feature networks injected."""
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

from reca_toolkit.evaluation.metrics.fid import (frechet_distance,
                                                 gaussian_stats)
from reca_toolkit.evaluation.scorers.builder import build_scorer, scorer_info
from reca_toolkit.registry import METRICS


def psnr(pred, target, data_range=255.0):
    """Per-image PSNR in dB of ``[N, C, H, W]`` tensors."""
    mse = ((pred.double() - target.double()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)


def _gaussian_window(sigma=1.5, truncate=3.5):
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(pred, target, data_range=255.0, sigma=1.5):
    """Per-image SSIM of ``[N, C, H, W]`` tensors, averaged over channels.

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=...)``: Gaussian
    moments (scipy's truncate=3.5), K1=0.01, K2=0.03, and the mean over the
    image cropped by the window radius -- so only fully covered pixels
    count and the border mode does not matter.
    """
    w = _gaussian_window(sigma)
    radius = len(w) // 2
    c = pred.shape[1]
    kx = w.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = w.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(x):
        return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)

    x, y = pred.double(), target.double()
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx ** 2
    vy = blur(y * y) - my ** 2
    cov = blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / (
        (mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


@METRICS.register_module()
class ReconstructionMetric(BaseMetric):
    """Reconstruction fidelity of each reconstruction against its
    generation-view input, averaged over the evaluation set: PSNR and SSIM
    on 0-255 pixels, and, with their feature networks injected, LPIPS and
    rFID (the Frechet distance between feature Gaussians of the inputs and
    of the reconstructions).

    Args:
        lpips: an ``LPIPS`` scorer config or object; None skips LPIPS.
        fid_features: a feature network config or object mapping
            ``[N, 3, H, W]`` in [-1, 1] to a list whose first entry is the
            pooled features (e.g. ``TorchvisionFeatures`` on Inception's
            ``avgpool``); None skips rFID.
        source: evaluate only samples of this data source (None: all).
    """

    default_prefix = 'recon'

    def __init__(self, lpips=None, fid_features=None, source=None,
                 collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.scorer_cfgs = dict(lpips=lpips, fid_features=fid_features)
        self.scorers = {}
        self.source = source
        self.resolution = None

    def scorer(self, name):
        if name not in self.scorers:
            self.scorers[name] = build_scorer(self.scorer_cfgs[name])
        return self.scorers[name]

    def process(self, data_batch, data_samples):
        samples = [s for s in data_samples
                   if self.source is None or s.get('source') == self.source]
        if not samples:
            return
        pred = torch.stack([s['pred'] for s in samples]).float().cpu()
        target = torch.stack([s['gen_pixels'] for s in samples]).float().cpu()
        self.resolution = list(pred.shape[-2:])
        to255 = lambda x: ((x.clamp(-1, 1) + 1) * 127.5).round()  # noqa
        results = [dict(psnr=float(p), ssim=float(s)) for p, s in zip(
            psnr(to255(pred), to255(target)), ssim(to255(pred),
                                                  to255(target)))]
        with torch.no_grad():
            if self.scorer_cfgs['lpips'] is not None:
                for r, d in zip(results, self.scorer('lpips')(pred, target)):
                    r['lpips'] = float(d)
            if self.scorer_cfgs['fid_features'] is not None:
                net = self.scorer('fid_features')
                for key, images in (('feat_pred', pred),
                                    ('feat_target', target)):
                    feats = net(images)[0].flatten(1).double()
                    for r, f in zip(results, feats):
                        r[key] = f.numpy()
        self.results.extend(results)

    def compute_metrics(self, results):
        metrics = {key: sum(r[key] for r in results) / len(results)
                   for key in ('psnr', 'ssim', 'lpips') if key in results[0]}
        if 'feat_pred' in results[0]:
            metrics['rfid'] = frechet_distance(
                *gaussian_stats(np.stack([r['feat_target'] for r in results])),
                *gaussian_stats(np.stack([r['feat_pred'] for r in results])))
        return metrics

    def card_info(self):
        return dict(metric=type(self).__name__, resolution=self.resolution,
                    scorers={name: scorer_info(self.scorers.get(name), cfg)
                             for name, cfg in self.scorer_cfgs.items()
                             if cfg is not None})
