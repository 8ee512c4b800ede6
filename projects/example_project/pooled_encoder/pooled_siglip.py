"""A Janus understanding encoder that average-pools SigLIP's patch grid.

RecA works best when the understanding embeddings are an information
bottleneck (the RecA authors lower the understanding resolution). Pooling
k x k patches is another bottleneck: 576 tokens become 144 at k=2, and the
LLM sees a coarser summary of the image.
"""
import torch
import torch.nn.functional as F
from torch import nn

from reca_toolkit.registry import ENCODERS


@ENCODERS.register_module()
class PooledSigLIPEncoder(nn.Module):
    """SigLIP ``vision_model``, k x k average pooling, then the ``aligner``.

    Built by ``JanusProUMM`` around the loaded model's ``vision_model`` and
    ``aligner`` (it asks for them by these argument names).
    """

    def __init__(self, vision_model, aligner, pool=2):
        super().__init__()
        self.vision_model = vision_model
        self.aligner = aligner
        self.pool = pool

    @property
    def image_size(self):
        return self.vision_model.config.image_size

    def forward(self, pixels):
        dtype = next(self.vision_model.parameters()).dtype
        with torch.no_grad():
            tokens = self.vision_model(
                pixel_values=pixels.to(dtype),
                interpolate_pos_encoding=pixels.shape[-1] != self.image_size,
            ).last_hidden_state
        side = int(tokens.shape[1] ** 0.5)
        grid = tokens.transpose(1, 2).reshape(len(tokens), -1, side, side)
        pooled = F.avg_pool2d(grid, self.pool).flatten(2).transpose(1, 2)
        return self.aligner(pooled.to(next(self.aligner.parameters()).dtype))
