"""Image loading that fails loudly and names the file."""
import io

import numpy as np
from PIL import Image, ImageOps

from reca_toolkit.registry import TRANSFORMS


class ImageLoadError(OSError):
    """An image that is missing, corrupt or truncated."""

    def __init__(self, path, reason):
        super().__init__(f"cannot load image '{path}': {reason}")
        self.path = path


def to_rgb(image):
    """EXIF-transposed RGB; transparency is composited onto white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ('RGBA', 'LA') or (image.mode == 'P'
                                         and 'transparency' in image.info):
        rgba = image.convert('RGBA')
        canvas = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    return image.convert('RGB')


@TRANSFORMS.register_module()
class LoadImage:
    """``img_path`` (or an in-memory ``img`` array) -> ``img``, a PIL RGB image.

    A source that reads images from containers (tar shards, parquet) hands
    the encoded file as ``img_bytes`` plus ``img_name``, where it came from
    (``shard.tar[key.jpg]``), which errors name; ``img_bytes`` is dropped
    once decoded.

    Decoding is forced here, so a truncated file fails at load time with an
    :class:`ImageLoadError` naming it rather than later in a resize.
    """

    def __call__(self, results):
        if 'img' in results:
            image = results['img']
            if isinstance(image, np.ndarray):
                image = Image.fromarray(image)
            results['img'] = to_rgb(image)
            return results
        if 'img_bytes' in results:
            path = results.get('img_name', '<in-memory bytes>')
            file = io.BytesIO(results.pop('img_bytes'))
        else:
            path = file = results['img_path']
        try:
            with Image.open(file) as image:
                image.load()
                results['img'] = to_rgb(image)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise ImageLoadError(path, f'{type(e).__name__}: {e}') from None
        return results
