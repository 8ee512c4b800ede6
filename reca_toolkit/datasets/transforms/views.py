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


def aspect_size(width, height, max_size, min_size, stride,
                max_pixels=14 * 14 * 9 * 1024):
    """``(width, height)`` as BAGEL's ``MaxLongEdgeMinShortEdgeResize``
    sizes an image (``data/transforms.py`` of ByteDance-Seed/Bagel): scaled
    so the long side is at most ``max_size`` (never enlarged for it) and the
    short side at least ``min_size``, both sides rounded to multiples of
    ``stride``; then shrunk below ``max_pixels`` (by the area ratio, as
    upstream) and, where the short side's minimum pushed the long one past
    ``max_size``, back to it."""
    def scaled(w, h, scale):
        return tuple(max(stride, int(round(round(v * scale) / stride)
                                     * stride)) for v in (w, h))

    scale = min(max_size / max(width, height), 1.0)
    scale = max(scale, min_size / min(width, height))
    width, height = scaled(width, height, scale)
    if width * height > max_pixels:
        width, height = scaled(width, height,
                               max_pixels / (width * height))
    if max(width, height) > max_size:
        width, height = scaled(width, height,
                               max_size / max(width, height))
    return width, height


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


@TRANSFORMS.register_module()
class AspectViews:
    """``img`` -> ``und_pixels`` and/or ``gen_pixels`` keeping the image's
    aspect ratio, each sized by :func:`aspect_size`: BAGEL's editing
    preprocessing, where the source keeps its shape and so does the edit.
    Views of different images differ in shape; a batch keeps them as a
    list (``collate_by_source``).

    Args:
        und: ``(max_size, min_size, stride)`` of the understanding view, or
            None for none (BAGEL's ViT: ``(980, 378, 14)``).
        gen: the same for the generation view (BAGEL's VAE:
            ``(1024, 512, 16)``).
        max_pixels: the area bound of :func:`aspect_size`.
    """

    def __init__(self, und=None, gen=None, max_pixels=14 * 14 * 9 * 1024):
        if und is None and gen is None:
            raise ValueError('AspectViews needs und, gen or both')
        self.sizes = dict(und_pixels=und, gen_pixels=gen)
        for key, size in self.sizes.items():
            if size is not None and len(size) != 3:
                raise ValueError(f'AspectViews {key[:3]}={size}: give '
                                 '(max_size, min_size, stride)')
        self.max_pixels = max_pixels

    def __call__(self, results):
        image = results.pop('img')
        for key, size in self.sizes.items():
            if size is not None:
                target = aspect_size(*image.size, *size,
                                     max_pixels=self.max_pixels)
                results[key] = to_tensor(image.resize(target, Image.BICUBIC))
        return results
