"""GenEval-Shapes' exact detector and colour classifier.

GenEval's two learned parts -- Mask2Former and CLIP colour classification --
replaced by rules that are exact on rendered shape scenes: every pixel is
snapped to the nearest palette colour, each colour's 4-connected components
are candidate objects, and a candidate is the shape whose mask, drawn in its
bounding box, it matches. Confidence is always 1, so GenEval's 0.3 / 0.9
detection thresholds stay in the logic but never bite.
"""
import cv2
import numpy as np
from PIL import Image, ImageDraw

from reca_toolkit.datasets.shapes import BACKGROUND, PALETTE, SHAPES
from reca_toolkit.registry import SCORERS
from reca_toolkit.evaluation.scorers.base import Detection
from reca_toolkit.version import __version__

COLOR_NAMES = tuple(PALETTE)
_COLORS = np.array([BACKGROUND] + [PALETTE[c] for c in COLOR_NAMES],
                   dtype=np.float64)


def snap_to_palette(image):
    """``[H, W, 3]`` uint8 -> ``[H, W]`` index of the nearest colour: 0 the
    background, ``k`` the ``k``-th of :data:`COLOR_NAMES` (1-based)."""
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2, and |p|^2 is the same for every c.
    pixels = np.asarray(image, dtype=np.float64)
    distance = (_COLORS ** 2).sum(1) - 2 * pixels @ _COLORS.T
    return distance.argmin(-1)


def shape_template(shape, w, h):
    """The ``[h, w]`` bool mask :func:`~reca_toolkit.datasets.shapes.render`
    draws for ``shape`` in a ``w`` x ``h`` box (same PIL calls, so a
    rendered object matches its template exactly)."""
    image = Image.new('1', (w, h), 0)
    draw = ImageDraw.Draw(image)
    if shape == 'square':
        draw.rectangle((0, 0, w - 1, h - 1), fill=1)
    elif shape == 'circle':
        draw.ellipse((0, 0, w - 1, h - 1), fill=1)
    else:
        draw.polygon(((w - 1) / 2, 0, w - 1, h - 1, 0, h - 1), fill=1)
    return np.asarray(image, dtype=bool)


@SCORERS.register_module()
class PaletteShapeDetector:
    """Shapes by palette snapping, connected components and templates.

    Each component is compared with the square, circle and triangle masks
    drawn in its bounding box; it is the best-matching shape if that mask's
    IoU with it reaches ``min_iou``, and no object otherwise, so colour
    blotches of a poor generation are not counted. Rendered objects match
    their template exactly (IoU 1).

    Args:
        min_size, max_size: bounds on an object's box side in pixels; the
            defaults suit the 64 px canvas with a 4 x 4 grid (objects are
            14 px).
        min_iou: the least IoU with the best shape template.
    """

    def __init__(self, min_size=8, max_size=16, min_iou=0.8):
        self.min_size = min_size
        self.max_size = max_size
        self.min_iou = min_iou
        self.templates = {}

    def info(self):
        return dict(name='PaletteShapeDetector', version=__version__,
                    min_size=self.min_size, max_size=self.max_size,
                    min_iou=self.min_iou)

    def classify(self, mask):
        """``(shape, iou)`` of the template that best matches ``mask``."""
        h, w = mask.shape
        best = (None, 0.0)
        for shape in SHAPES:
            key = (shape, w, h)
            if key not in self.templates:
                self.templates[key] = shape_template(shape, w, h)
            template = self.templates[key]
            iou = (mask & template).sum() / (mask | template).sum()
            best = max(best, (shape, iou), key=lambda x: x[1])
        return best

    def __call__(self, image):
        snapped = snap_to_palette(image)
        detections = []
        for k in range(1, len(_COLORS)):
            count, labels, stats, _ = cv2.connectedComponentsWithStats(
                (snapped == k).astype(np.uint8), connectivity=4)
            for c in range(1, count):
                x, y, w, h, _ = (int(v) for v in stats[c])
                if not self.min_size <= min(w, h) <= max(w, h) \
                        <= self.max_size:
                    continue
                mask = labels == c
                shape, iou = self.classify(mask[y:y + h, x:x + w])
                if iou >= self.min_iou:
                    detections.append(Detection(
                        shape, 1.0,
                        (float(x), float(y), float(x + w), float(y + h)),
                        mask))
        return detections


@SCORERS.register_module()
class PaletteColorClassifier:
    """The palette colour most of an object's mask pixels snap to."""

    def info(self):
        return dict(name='PaletteColorClassifier', version=__version__)

    def __call__(self, image, detections, classname):
        snapped = snap_to_palette(image)
        colors = []
        for det in detections:
            votes = np.bincount(snapped[det.mask], minlength=len(_COLORS))
            votes[0] = 0
            colors.append(COLOR_NAMES[int(votes.argmax()) - 1])
        return colors
