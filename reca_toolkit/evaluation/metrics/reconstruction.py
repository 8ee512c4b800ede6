"""Reconstruction fidelity of reconstructions vs inputs: PSNR and SSIM,
and LPIPS / rFID with their feature networks injected -- each computed by
torchmetrics (the ``eval`` extra), the implementation most published
reconstruction numbers use."""
import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from reca_toolkit.evaluation.metrics.fid import frechet_distance
from reca_toolkit.evaluation.scorers.base import require_torchmetrics
from reca_toolkit.evaluation.scorers.builder import build_scorer, scorer_info
from reca_toolkit.registry import METRICS


def psnr(pred, target, data_range=255.0):
    """Per-image PSNR in dB of ``[N, C, H, W]`` tensors, in float64."""
    image = require_torchmetrics('functional.image', 'PSNR')
    return image.peak_signal_noise_ratio(
        pred.double(), target.double(), data_range=data_range,
        reduction='none', dim=(1, 2, 3))


def ssim(pred, target, data_range=255.0):
    """Per-image SSIM of ``[N, C, H, W]`` tensors, in float64:
    torchmetrics' defaults (11 x 11 Gaussian window, sigma 1.5, K1 0.01,
    K2 0.03), its map averaged over channels and the whole image, borders
    reflect-padded (torchmetrics >= 1.5; scikit-image instead crops the
    window radius)."""
    image = require_torchmetrics('functional.image', 'SSIM')
    return image.structural_similarity_index_measure(
        pred.double(), target.double(), data_range=data_range,
        reduction='none')


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
                np.stack([r['feat_target'] for r in results]),
                np.stack([r['feat_pred'] for r in results]))
        return metrics

    def card_info(self):
        return dict(metric=type(self).__name__, resolution=self.resolution,
                    scorers={name: scorer_info(self.scorers.get(name), cfg)
                             for name, cfg in self.scorer_cfgs.items()
                             if cfg is not None})
