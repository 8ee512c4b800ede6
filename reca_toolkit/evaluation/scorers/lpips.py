"""LPIPS (Zhang et al. 2018): learned perceptual distance, with the
feature network injected.

d(x, y) = sum over layers l of the spatial mean of
|| w_l * (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|) ||^2, where f_l are the
backbone's activations (unit-normalised over channels) and w_l >= 0 the
per-channel linear heads. Inputs in [-1, 1] are first shifted and scaled by
LPIPS's constants. The heads ship in the ``lpips`` wheel
(``lpips/weights/v0.1/alex.pth``: tensors ``lin<l>.model.1.weight``); the
AlexNet/VGG backbone must come from a local file.
"""
import torch
from torch import nn

from reca_toolkit.evaluation.scorers.builder import build_scorer
from reca_toolkit.registry import SCORERS
from reca_toolkit.evaluation.scorers.base import file_sha256, load_state_dict

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def normalize_channels(x, eps=1e-10):
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + eps)


def lpips_distance(feats_x, feats_y, weights):
    """Per-image LPIPS from matched feature lists and head weights
    (``[C_l]`` each)."""
    total = 0
    for fx, fy, w in zip(feats_x, feats_y, weights, strict=True):
        diff = (normalize_channels(fx.double())
                - normalize_channels(fy.double())) ** 2
        total = total + (diff * w.double().view(1, -1, 1, 1)).sum(1).mean(
            (1, 2))
    return total


@SCORERS.register_module()
class LPIPS(nn.Module):
    """``lpips(pred, target) -> [N]`` distances of images in [-1, 1].

    Args:
        backbone: a feature network returning one map per layer (a
            ``SCORERS`` config such as ``TorchvisionFeatures`` with
            ``mean=None``, or a module).
        heads: the linear heads' weights file.
    """

    def __init__(self, backbone, heads):
        super().__init__()
        self.backbone = build_scorer(backbone)
        state = load_state_dict(heads)
        keys = sorted((k for k in state if k.startswith('lin')),
                      key=lambda k: int(k[3:k.index('.')]))
        if not keys:
            raise ValueError(f'{heads} holds no LPIPS heads (lin<l>.*)')
        self.weights = [state[k].flatten().float() for k in keys]
        self.heads = str(heads)
        self.register_buffer('shift', torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer('scale', torch.tensor(SCALE).view(1, 3, 1, 1))

    def info(self):
        info = dict(name='LPIPS', heads=self.heads,
                    heads_sha256=file_sha256(self.heads))
        if hasattr(self.backbone, 'info'):
            info['backbone'] = self.backbone.info()
        return info

    @torch.no_grad()
    def forward(self, pred, target):
        scaled = lambda x: (x.float() - self.shift) / self.scale  # noqa
        return lpips_distance(self.backbone(scaled(pred)),
                              self.backbone(scaled(target)), self.weights)
