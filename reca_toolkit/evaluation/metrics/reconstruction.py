"""Reconstruction fidelity: PSNR and SSIM of reconstructions vs inputs."""
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

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
    """PSNR and SSIM between each reconstruction and its generation-view
    input, on 0-255 pixels, averaged over the evaluation set."""

    default_prefix = 'recon'

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            to255 = lambda x: ((x.float().cpu().clamp(-1, 1) + 1) * 127.5  # noqa
                               ).round()[None]
            pred = to255(sample['pred'])
            target = to255(sample['gen_pixels'])
            self.results.append(dict(psnr=float(psnr(pred, target)),
                                     ssim=float(ssim(pred, target))))

    def compute_metrics(self, results):
        n = len(results)
        return dict(psnr=sum(r['psnr'] for r in results) / n,
                    ssim=sum(r['ssim'] for r in results) / n)
