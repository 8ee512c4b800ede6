"""Image grids for logs and sample folders."""
import numpy as np
from PIL import Image


def to_uint8(images):
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, H, W, 3]`` uint8 array.

    Rounds in numpy: ``torch.round`` on CPU is slow enough to dominate
    scoring many small images.
    """
    array = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return np.rint(array.numpy()).astype(np.uint8).transpose(0, 2, 3, 1)


def make_grid(images, ncols, pad=2, pad_value=255):
    """Tile ``[N, 3, H, W]`` images in [-1, 1] into one uint8 HWC array."""
    tiles = to_uint8(images)
    n, h, w, _ = tiles.shape
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3),
                   pad_value, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = tile
    return grid


def save_png(array, path):
    Image.fromarray(array).save(path)
