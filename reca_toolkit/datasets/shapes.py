"""Scenes of coloured shapes on a grey canvas, rendered in code.

Objects sit on a grid of square slots, so scenes render and parse exactly.
They give the toolkit training and evaluation images that need no download
(the demo trains on them; GenEval-Shapes scores with them).
"""
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from reca_toolkit.datasets.source import Source
from reca_toolkit.registry import DATASETS

BACKGROUND = (110, 110, 110)
PALETTE = {
    'red': (220, 40, 40),
    'green': (40, 180, 60),
    'blue': (40, 80, 220),
    'yellow': (240, 220, 40),
    'purple': (150, 60, 190),
    'white': (245, 245, 245),
}
SHAPES = ('circle', 'square', 'triangle')


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    color: str
    row: int
    col: int


@dataclass(frozen=True)
class ShapeScene:
    objects: tuple
    grid: int = 4


def render(scene, canvas_size=64):
    """The scene as an ``[H, W, 3]`` uint8 array; 1 px inset per slot."""
    slot = canvas_size // scene.grid
    image = Image.new('RGB', (canvas_size, canvas_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        x0, y0 = obj.col * slot + 1, obj.row * slot + 1
        x1, y1 = x0 + slot - 3, y0 + slot - 3
        color = PALETTE[obj.color]
        if obj.shape == 'square':
            draw.rectangle((x0, y0, x1, y1), fill=color)
        elif obj.shape == 'circle':
            draw.ellipse((x0, y0, x1, y1), fill=color)
        else:
            draw.polygon(((x0 + x1) / 2, y0, x1, y1, x0, y1), fill=color)
    return np.asarray(image)


def random_scene(rng, grid=4, max_objects=4):
    """1 to ``max_objects`` objects in distinct random slots."""
    slots = rng.sample(range(grid * grid), rng.randint(1, max_objects))
    return ShapeScene(tuple(
        ShapeObject(rng.choice(SHAPES), rng.choice(sorted(PALETTE)),
                    s // grid, s % grid) for s in sorted(slots)), grid)


def _location(obj, grid):
    """Coarse place of an object: its slot centre in a 3 x 3 division."""
    third = lambda i: (2 * i + 1) * 3 // (2 * grid)  # noqa: E731
    row = ('top', 'middle', 'bottom')[third(obj.row)]
    col = ('left', 'center', 'right')[third(obj.col)]
    return 'center' if (row, col) == ('middle', 'center') else f'{row} {col}'


def describe(scene):
    """A dense caption naming every object's colour, shape and place."""
    parts = [f'a {o.color} {o.shape} at the {_location(o, scene.grid)}'
             for o in scene.objects]
    return ' and '.join([', '.join(parts[:-1]), parts[-1]]) \
        if len(parts) > 1 else parts[0]


@DATASETS.register_module()
class ShapeScenes(Source):
    """``num_scenes`` random scenes, scene ``i`` seeded by ``(seed, i)``.

    The raw sample holds the rendered ``img``, its dense ``caption`` and the
    one-turn conversation ``(question, caption)``.
    """

    def __init__(self, num_scenes=1000, seed=0, canvas_size=64, grid=4,
                 max_objects=4, question='Describe this image in detail.',
                 pipeline=()):
        super().__init__(pipeline)
        self.num_scenes = num_scenes
        self.seed = seed
        self.canvas_size = canvas_size
        self.grid = grid
        self.max_objects = max_objects
        self.question = question

    def __len__(self):
        return self.num_scenes

    def scene(self, index):
        return random_scene(random.Random(f'{self.seed}:{index}'), self.grid,
                            self.max_objects)

    def raw(self, index):
        scene = self.scene(index)
        caption = describe(scene)
        return dict(img=render(scene, self.canvas_size), caption=caption,
                    conversations=[(self.question, caption)])
