"""Feature networks for rFID, from local weights only.

No backbone weights ship with any package this toolkit can install
(Inception for FID is a download), so the user supplies them as files.
Third-party weights are loaded from ``.safetensors`` or with
``weights_only=True``, never unpickled.
"""
import torch
import torch.nn.functional as F
from torch import nn

from reca_toolkit.registry import SCORERS
from reca_toolkit.evaluation.scorers.base import file_sha256, load_state_dict


@SCORERS.register_module()
class TorchvisionFeatures(nn.Module):
    """Intermediate activations of a torchvision model.

    ``net(images)`` takes ``[N, 3, H, W]`` in [-1, 1] and returns the list of
    the ``nodes``' outputs.

    Args:
        arch: a ``torchvision.models`` constructor name (``alexnet``,
            ``vgg16``, ``inception_v3``).
        weights: local weights file (``.safetensors`` or ``.pth``).
        nodes: graph node names to return (``features.1``, ``avgpool``).
        input_size: resize inputs to this side first (299 for Inception).
        mean, std: input normalisation after mapping to [0, 1]; None feeds
            [-1, 1] unchanged.
        arch_kwargs: constructor arguments (``aux_logits=False`` ...).
    """

    def __init__(self, arch, weights, nodes, input_size=None,
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 arch_kwargs=None):
        super().__init__()
        import torchvision
        from torchvision.models.feature_extraction import \
            create_feature_extractor
        model = getattr(torchvision.models, arch)(weights=None,
                                                  **(arch_kwargs or {}))
        model.load_state_dict(load_state_dict(weights))
        self.extractor = create_feature_extractor(model.eval(),
                                                  list(nodes)).eval()
        self.nodes = list(nodes)
        self.arch = arch
        self.weights = str(weights)
        self.input_size = input_size
        self.normalize = mean is not None
        if self.normalize:
            self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def info(self):
        return dict(name='TorchvisionFeatures', arch=self.arch,
                    nodes=self.nodes, weights=self.weights,
                    weights_sha256=file_sha256(self.weights))

    @torch.no_grad()
    def forward(self, images):
        x = images.float()
        if self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size),
                              mode='bilinear', align_corners=False)
        if self.normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        out = self.extractor(x)
        return [out[n] for n in self.nodes]
