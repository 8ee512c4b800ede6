"""Image grids for logs and sample folders."""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

CAPTION_LINES = 3


def to_uint8(images):
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, H, W, 3]`` uint8 array.

    Rounds in numpy: ``torch.round`` on CPU is slow enough to dominate
    scoring many small images.
    """
    array = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return np.rint(array.numpy()).astype(np.uint8).transpose(0, 2, 3, 1)


def _wrap(text, font, width):
    """``text`` in lines no wider than ``width`` pixels, at most
    :data:`CAPTION_LINES` of them (the last ends in '...' if cut)."""
    lines = []
    for word in text.split():
        if lines and font.getlength(f'{lines[-1]} {word}') <= width:
            lines[-1] += f' {word}'
            continue
        while len(word) > 1 and font.getlength(word) > width:
            cut = len(word) - 1             # a word wider than the tile
            while cut > 1 and font.getlength(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    if len(lines) > CAPTION_LINES:
        last = lines[CAPTION_LINES - 1]
        while last and font.getlength(last + '...') > width:
            last = last[:-1]
        lines = lines[:CAPTION_LINES - 1] + [last + '...']
    return lines


def caption_strips(captions, width):
    """One white ``[h, width, 3]`` strip per caption with its text in
    black, all of the height the longest one needs."""
    # 8 px fits "reconstruction" under a 64 px tile; larger tiles scale up.
    font = ImageFont.load_default(size=max(8, width // 24))
    line_height = font.getbbox('Ag')[3] + 2
    wrapped = [_wrap(str(c), font, width - 4) for c in captions]
    height = line_height * max(1, max(map(len, wrapped))) + 2
    strips = []
    for lines in wrapped:
        strip = Image.new('RGB', (width, height), (255, 255, 255))
        draw = ImageDraw.Draw(strip)
        for i, line in enumerate(lines):
            draw.text((2, 1 + i * line_height), line, fill=(0, 0, 0),
                      font=font)
        strips.append(np.asarray(strip))
    return np.stack(strips)


def make_grid(images, ncols, pad=2, pad_value=255, captions=None):
    """Tile ``[N, 3, H, W]`` images in [-1, 1] into one uint8 HWC array.

    ``captions``, one string per image, are drawn under their tiles, so
    that a grid reads without the log.
    """
    tiles = to_uint8(images)
    if captions is not None:
        if len(captions) != len(tiles):
            raise ValueError(f'{len(captions)} captions for {len(tiles)} '
                             'images')
        tiles = np.concatenate(
            [tiles, caption_strips(captions, tiles.shape[2])], axis=1)
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
