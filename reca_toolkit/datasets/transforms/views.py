"""The two views RecA trains on: understanding input and generation target."""
import numpy as np
import torch
from PIL import Image

from reca_toolkit.registry import TRANSFORMS

RESIZE_MODES = ('center_crop', 'pad', 'stretch')


def square(image, size, mode):
    """Resize a PIL image to ``size`` x ``size``.

    ``center_crop`` keeps the central square; ``pad`` letterboxes onto grey
    (Janus's and LLaVA's understanding preprocessing); ``stretch`` ignores
    the aspect ratio (Harmon's RecA data).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode '{mode}' is not one of {RESIZE_MODES}")
    w, h = image.size
    if mode == 'center_crop':
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    elif mode == 'pad' and w != h:
        side = max(w, h)
        canvas = Image.new('RGB', (side, side), (127, 127, 127))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image = canvas
    return image.resize((size, size), Image.BICUBIC)


def to_tensor(image):
    """PIL RGB -> ``[3, H, W]`` uint8 tensor."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(
        2, 0, 1)


@TRANSFORMS.register_module()
class ImageViews:
    """``img`` -> ``und_pixels`` and/or ``gen_pixels``, uint8 ``[3, S, S]``.

    The understanding view's size is RecA's information-bottleneck knob: the
    smaller it is, the less the model can copy pixels and the more it must
    rely on what its understanding encoder keeps.

    Args:
        und_size: understanding-view side in pixels, or None for no view.
        gen_size: generation-target side in pixels, or None for no view.
        mode: one of ``center_crop``, ``pad``, ``stretch``.
    """

    def __init__(self, und_size=None, gen_size=None, mode='center_crop'):
        if und_size is None and gen_size is None:
            raise ValueError('ImageViews needs und_size, gen_size or both')
        if mode not in RESIZE_MODES:
            raise ValueError(
                f"ImageViews mode '{mode}' is not one of {RESIZE_MODES}")
        self.sizes = dict(und_pixels=und_size, gen_pixels=gen_size)
        self.mode = mode

    def __call__(self, results):
        image = results.pop('img')
        views = {}
        for key, size in self.sizes.items():
            if size is not None:
                # Equal sizes share one resize, the pipeline's dearest step.
                if size not in views:
                    views[size] = to_tensor(square(image, size, self.mode))
                results[key] = views[size]
        return results
