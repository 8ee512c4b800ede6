"""A generation tokenizer that is a lookup table of image patches.

Where every image is a tiling of a few distinct patches -- the rendered
shape scenes, whose objects sit on a slot grid -- an image's codes are the
indices of its patches in that table, and decoding pastes them back. The
round trip is exact, needs no training and costs nothing, which is what
makes a tiny UMM learnable on a CPU: the generation head learns scenes, not
a VQ-VAE's codes. It has :class:`~reca_toolkit.models.encoders.janus.
JanusVQTokenizer`'s interface, so an adapter uses either.

The toy Janus of this project (``projects/janus_toy/pretrained``) was
trained on these codes: its generation head predicts the 19 patches of
:func:`shape_patch_codebook`.
"""
import numpy as np
import torch
from torch import nn

from reca_toolkit.datasets.shapes import (ALL_PAIRS, ShapeObject, ShapeScene,
                                          render)
from reca_toolkit.registry import ENCODERS, FUNCTIONS


@FUNCTIONS.register_module()
def shape_patch_codebook(canvas_size=64, grid=4):
    """Every distinct slot patch a shape scene can hold, ``[K, S, S, 3]``
    uint8: the empty slot, then each (colour, shape) of
    :data:`~reca_toolkit.datasets.shapes.ALL_PAIRS`.

    Objects sit at the same offset in every slot, so these ``1 + 18``
    patches tile every scene exactly: a lookup table over them is a
    lossless image tokenizer (:class:`PatchLookupTokenizer`).
    """
    slot = canvas_size // grid
    patches = [render(ShapeScene((), grid), canvas_size)[:slot, :slot]]
    for color, shape in ALL_PAIRS:
        image = render(ShapeScene((ShapeObject(shape, color, 0, 0), ), grid),
                       canvas_size)
        patches.append(image[:slot, :slot])
    return np.stack(patches)


@ENCODERS.register_module()
class PatchLookupTokenizer(nn.Module):
    """Pixels <-> indices of square patches in a fixed table.

    Encoding picks, for each patch of the image, the nearest table entry
    (squared pixel distance), so it is lossless exactly on images tiled by
    the table's patches; decoding is a lookup.

    Args:
        codebook: the table, ``[K, S, S, 3]`` uint8, or a ``FUNCTIONS``
            config that returns one (``dict(type='shape_patch_codebook')``).
        grid_size: patches per side; images are ``grid_size * S`` pixels.
    """

    def __init__(self, codebook=dict(type='shape_patch_codebook'),
                 grid_size=4):
        super().__init__()
        if isinstance(codebook, dict):
            codebook = FUNCTIONS.build(codebook)
        table = torch.as_tensor(codebook)
        if table.dim() != 4 or table.shape[1] != table.shape[2] \
                or table.shape[3] != 3:
            raise ValueError('PatchLookupTokenizer codebook must be '
                             f'[K, S, S, 3], got {tuple(table.shape)}')
        # [K, 3, S, S] in [-1, 1]; a fixed table, so not part of checkpoints.
        self.register_buffer(
            'patches', table.permute(0, 3, 1, 2).float() / 127.5 - 1,
            persistent=False)
        self._grid_size = grid_size

    @property
    def num_codes(self):
        return self.patches.shape[0]

    @property
    def patch_size(self):
        return self.patches.shape[-1]

    @property
    def grid_size(self):
        return self._grid_size

    @property
    def num_tokens(self):
        return self.grid_size ** 2

    @property
    def image_size(self):
        return self.grid_size * self.patch_size

    @torch.no_grad()
    def encode(self, pixels):
        """``[B, 3, H, W]`` in [-1, 1] -> ``[B, grid_size ** 2]`` codes in
        raster order."""
        if tuple(pixels.shape[-2:]) != (self.image_size, ) * 2:
            raise ValueError(
                f'PatchLookupTokenizer encodes {self.image_size} px images '
                f'({self.grid_size} x {self.grid_size} patches of '
                f'{self.patch_size} px), got {tuple(pixels.shape[-2:])}; set '
                f'the generation view to {self.image_size} px')
        s, g = self.patch_size, self.grid_size
        patches = pixels.float().unflatten(2, (g, s)).unflatten(4, (g, s))
        patches = patches.permute(0, 2, 4, 1, 3, 5).flatten(3).flatten(1, 2)
        table = self.patches.to(patches.device).flatten(1)
        distance = (table ** 2).sum(1) - 2 * patches @ table.T
        return distance.argmin(-1)

    @torch.no_grad()
    def decode(self, codes):
        """``[B, grid_size ** 2]`` codes -> ``[B, 3, H, W]`` in [-1, 1]."""
        if codes.shape[1] != self.num_tokens:
            raise ValueError(f'expected {self.num_tokens} codes per image, '
                             f'got {codes.shape[1]}')
        g = self.grid_size
        patches = self.patches.to(codes.device)[codes]  # [B, N, 3, S, S]
        image = patches.unflatten(1, (g, g)).permute(0, 3, 1, 4, 2, 5)
        return image.flatten(4, 5).flatten(2, 3).contiguous()
