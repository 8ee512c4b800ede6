"""The image loader: every path that reads an image -- training sources
(files, tar members, parquet cells), the sample-grid hook, evaluation
metrics, the tools -- goes through :func:`decode_image`, which fails loudly
and names where the image came from."""
import io

import numpy as np
from PIL import Image, ImageOps

from reca_toolkit.registry import TRANSFORMS

_PNG = b'\x89PNG\r\n\x1a\n'
_JPEG = b'\xff\xd8'
# 16-bit greyscale: PNGs open as I;16 (I in older Pillow).
_SIXTEEN_BIT = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
# Markers that may end a JPEG scan: the next scan and what may precede it
# (tables, restart interval, comments, application data), DNL, and the end.
_AFTER_SCAN = {0xC4, 0xCC, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE,
               *range(0xE0, 0xF0)}


class ImageLoadError(OSError):
    """An image that is missing, corrupt or truncated."""

    def __init__(self, path, reason):
        super().__init__(f"cannot load image '{path}': {reason}")
        self.path = path


def to_rgb(image):
    """EXIF-transposed 8-bit RGB.

    16-bit greyscale is scaled to 8 bits: ``convert`` clips it at 255, so a
    0-65535 ramp came out 99.6% white. Transparency (alpha, or a palette's
    or greyscale's transparent entry) is composited onto white. 16-bit RGB
    PNGs Pillow already opens as 8-bit RGB.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT:
        levels = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        image = Image.fromarray(np.rint(levels / 257).astype(np.uint8), 'L')
    elif image.mode == 'F':
        raise ValueError('a 32-bit float image has no fixed value range; '
                         'save it with 8 or 16 bits per channel')
    if image.mode in ('RGBA', 'LA', 'PA', 'RGBa') or \
            'transparency' in image.info:
        rgba = image.convert('RGBA')
        canvas = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    return image.convert('RGB')


def _entropy_coded_problem(data, start):
    """Scan the entropy-coded data of the JPEG scan at ``start``; return the
    offset of the marker that ends it and what is wrong with the data.

    In entropy-coded data 0xFF only starts a stuffed 0xFF00, a fill byte, a
    restart marker RST0..7 in cyclic order, or the marker that ends the
    scan. libjpeg resyncs over anything else with a warning that Pillow
    discards, and decodes garbage.
    """
    expected, pos = 0, start
    while True:
        pos = data.find(b'\xff', pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data), None          # truncated: PIL reports it
        code = data[pos + 1]
        if code in (0x00, 0xFF):
            pos += 2 if code == 0x00 else 1
        elif 0xD0 <= code <= 0xD7:
            if code - 0xD0 != expected:
                return pos, (f'restart marker RST{code - 0xD0} at byte {pos}'
                             f' where RST{expected} belongs')
            expected, pos = (expected + 1) % 8, pos + 2
        elif code in _AFTER_SCAN:
            return pos, None
        else:
            return pos, (f'marker 0x{code:02X} at byte {pos} inside the '
                         'entropy-coded data')


def jpeg_problem(data):
    """What the bytes of a JPEG show to be corrupt, or None.

    Walks the segments and checks each scan's entropy-coded data
    (:func:`_entropy_coded_problem`). After a scan, what follows a marker
    segment must be the next marker; data there means a marker that does
    not belong cut the scan short. Before the first scan, stray bytes are a
    sloppy writer's, which libjpeg skips, and the walk stops without
    guessing. A flipped bit inside the data keeps the structure valid and
    is not detected.
    """
    pos, scanned = 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return (f'data at byte {pos} where a marker belongs, after a '
                    'scan' if scanned else None)
        marker = data[pos + 1]
        if marker == 0xFF:                  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:
            return None
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], 'big')
        if marker == 0xDA:
            pos, problem = _entropy_coded_problem(data, pos)
            if problem:
                return problem
            scanned = True
    return None


def load_image(path):
    """The image file ``path`` as a PIL RGB image (:func:`decode_image`)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise ImageLoadError(path, f'{type(e).__name__}: {e}') from None
    return decode_image(data, path)


def decode_image(data, name):
    """An encoded image's bytes as a PIL RGB image (:func:`to_rgb`).

    Raises:
        ImageLoadError: naming ``name``, when PIL cannot decode the bytes
            or finds them truncated, when a PNG chunk's checksum is wrong
            (``Image.verify``), or when a JPEG's bytes show it corrupt
            (:func:`jpeg_problem`).
    """
    try:
        problem = jpeg_problem(data) if data.startswith(_JPEG) else None
        if problem:
            raise ImageLoadError(name, f'corrupt JPEG data: {problem}')
        if data.startswith(_PNG):
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return to_rgb(image)
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as e:
        # Image.verify reports a bad checksum as a SyntaxError.
        raise ImageLoadError(name, f'{type(e).__name__}: {e}') from None


@TRANSFORMS.register_module()
class LoadImage:
    """``img_path`` (or an in-memory ``img`` array) -> ``img``, a PIL RGB
    image, through :func:`load_image`.

    A source that reads images from containers (tar shards, parquet) hands
    the encoded file as ``img_bytes`` plus ``img_name``, where it came from
    (``shard.tar[key.jpg]``), which errors name; ``img_bytes`` is dropped
    once decoded.
    """

    def __call__(self, results):
        if 'img' in results:
            image = results['img']
            if isinstance(image, np.ndarray):
                image = Image.fromarray(image)
            results['img'] = to_rgb(image)
            return results
        if 'img_bytes' in results:
            results['img'] = decode_image(
                results.pop('img_bytes'),
                results.get('img_name', '<in-memory bytes>'))
        else:
            results['img'] = load_image(results['img_path'])
        return results
