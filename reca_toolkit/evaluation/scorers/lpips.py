"""LPIPS (Zhang et al. 2018): learned perceptual distance, as torchmetrics
computes it, with the backbone's weights from a local file.

torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` downloads its
ImageNet backbone from torchvision's hub. This scorer builds the same
network (``torchmetrics.functional.image.lpips._LPIPS``) with a random
backbone instead, so nothing is downloaded, and then loads the backbone from
a torchvision state dict the user supplies (e.g. torchvision's
``alexnet-owt-7be5be79.pth``; only its ``features.*`` tensors are used).
The linear heads ship inside the torchmetrics wheel
(``lpips_models/<net>.pth``, the LPIPS v0.1 heads); another heads file can
be given. Both are read as tensors only, never unpickled.
"""
import re
from pathlib import Path

import torch
from torch import nn

from reca_toolkit.evaluation.scorers.base import (file_sha256,
                                                  load_state_dict,
                                                  package_version,
                                                  require_torchmetrics)
from reca_toolkit.registry import SCORERS

# torchmetrics' LPIPS network name -> the torchvision model of its backbone
BACKBONES = {'alex': 'alexnet', 'vgg': 'vgg16', 'squeeze': 'squeezenet1_1'}


def load_backbone(net, path, arch):
    """Load a torchvision ``arch`` state dict into LPIPS's backbone, whose
    slices (``nn.Sequential``) hold the ``features`` layers under their
    torchvision indices; every backbone tensor must be in the file."""
    state = load_state_dict(path)
    mapped, missing = {}, []
    for name, module in net.named_modules():
        if isinstance(module, nn.Sequential):
            for key in module.state_dict():
                source = f'features.{key}'
                if source in state:
                    mapped[f'{name}.{key}'] = state[source]
                else:
                    missing.append(source)
    if missing:
        raise ValueError(f'{path} is not a torchvision {arch} state dict: '
                         f'it lacks {missing}')
    try:
        net.load_state_dict(mapped)
    except RuntimeError as e:
        raise ValueError(f'{path} does not fit torchvision {arch}: {e}') \
            from None


@SCORERS.register_module()
class LPIPS(nn.Module):
    """``lpips(pred, target) -> [N]`` distances of images in [-1, 1].

    Args:
        weights: local torchvision state dict of the backbone.
        net: ``'alex'`` (LPIPS's default), ``'vgg'`` or ``'squeeze'``.
        heads: the linear heads' weights file; None takes the ones in the
            torchmetrics wheel.
    """

    def __init__(self, weights, net='alex', heads=None):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"LPIPS net='{net}' is not one of "
                             f'{sorted(BACKBONES)}')
        lpips = require_torchmetrics('functional.image.lpips', 'LPIPS')
        if not Path(weights).expanduser().is_file():
            raise FileNotFoundError(
                f'LPIPS backbone weights {weights} do not exist (a '
                f'torchvision {BACKBONES[net]} state dict; nothing is '
                'downloaded)')
        self.lpips = lpips._NoTrainLpips(pretrained=False, net=net,
                                         pnet_rand=True)
        load_backbone(self.lpips.net, weights, BACKBONES[net])
        self.heads = str(heads or Path(lpips.__file__).parent /
                         'lpips_models' / f'{net}.pth')
        missing, unexpected = self.lpips.load_state_dict(
            load_state_dict(self.heads), strict=False)
        # the heads are registered twice, as lin<l> and in the list lins
        missing = [k for k in missing if re.match(r'lin\d', k)]
        if missing or unexpected:
            raise ValueError(f'{self.heads} is not a file of LPIPS {net} '
                             f'heads: it lacks {missing}, and has '
                             f'{unexpected} besides')
        self.net = net
        self.weights = str(weights)
        self.requires_grad_(False)

    def info(self):
        return dict(name='LPIPS', implementation='torchmetrics',
                    torchmetrics=package_version('torchmetrics'),
                    net=self.net, weights=self.weights,
                    weights_sha256=file_sha256(self.weights),
                    heads=self.heads, heads_sha256=file_sha256(self.heads))

    @torch.no_grad()
    def forward(self, pred, target):
        return self.lpips(pred.float(), target.float()).flatten()
