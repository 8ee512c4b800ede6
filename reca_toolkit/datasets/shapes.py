"""Scenes of coloured shapes on a grey canvas, rendered in code.

Objects sit on a grid of square slots, so scenes render and parse exactly.
They give the toolkit training and evaluation images that need no download:
the demo trains on them, and GenEval-Shapes
(:mod:`reca_toolkit.datasets.geneval_shapes`) renders its ground truth with
the same :func:`render`.

Some colour-shape pairs (:data:`HELD_OUT_PAIRS`) never appear in training
scenes, so GenEval-Shapes' ``color_attr`` prompts, which use them, measure
attribute binding rather than recall of seen pairs.

Two kinds of text describe a scene: :func:`describe`, a dense description
of every object (what an understanding model is taught to say), and
:func:`caption`, a GenEval-style prompt that can drop details at random the
way real image captions do.
"""
import itertools
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
NUMBERS = ('zero', 'one', 'two', 'three', 'four')
ALL_PAIRS = tuple(itertools.product(sorted(PALETTE), SHAPES))
# Each colour once and each shape twice, so training still shows every
# colour and every shape, just not in these combinations.
HELD_OUT_PAIRS = frozenset({
    ('red', 'triangle'), ('green', 'circle'), ('blue', 'square'),
    ('yellow', 'circle'), ('purple', 'square'), ('white', 'triangle'),
})
TRAIN_PAIRS = tuple(p for p in ALL_PAIRS if p not in HELD_OUT_PAIRS)


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


def slot_box(row, col, canvas_size=64, grid=4):
    """The inclusive pixel box ``(x0, y0, x1, y1)`` an object fills.

    The 1 px inset leaves a 2 px gap between neighbouring slots, so two
    same-coloured neighbours never touch and parse as two objects.
    """
    slot = canvas_size // grid
    x0, y0 = col * slot + 1, row * slot + 1
    return x0, y0, x0 + slot - 3, y0 + slot - 3


def render(scene, canvas_size=64):
    """The scene as an ``[H, W, 3]`` uint8 array."""
    image = Image.new('RGB', (canvas_size, canvas_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        x0, y0, x1, y1 = slot_box(obj.row, obj.col, canvas_size, scene.grid)
        color = PALETTE[obj.color]
        if obj.shape == 'square':
            draw.rectangle((x0, y0, x1, y1), fill=color)
        elif obj.shape == 'circle':
            draw.ellipse((x0, y0, x1, y1), fill=color)
        elif obj.shape == 'triangle':
            draw.polygon(((x0 + x1) / 2, y0, x1, y1, x0, y1), fill=color)
        else:
            raise ValueError(f"unknown shape '{obj.shape}'; shapes are "
                             f'{SHAPES}')
    return np.asarray(image)


def random_scene(rng, grid=4, max_objects=4, pairs=TRAIN_PAIRS):
    """1 to ``max_objects`` objects in distinct random slots, each a random
    ``(colour, shape)`` of ``pairs``."""
    slots = rng.sample(range(grid * grid), rng.randint(1, max_objects))
    pairs = sorted(pairs)
    objects = []
    for s in sorted(slots):
        color, shape = rng.choice(pairs)
        objects.append(ShapeObject(shape, color, s // grid, s % grid))
    return ShapeScene(tuple(objects), grid)


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


def relation(a, b):
    """Where object ``a`` is relative to ``b`` when they share a row or a
    column (the GenEval relation then holds unambiguously), else None."""
    if a.row == b.row and a.col != b.col:
        return 'left of' if a.col < b.col else 'right of'
    if a.col == b.col and a.row != b.row:
        return 'above' if a.row < b.row else 'below'
    return None


def caption(scene, rng=None, color_drop=0.0, relation_drop=0.0,
            unnamed_pairs=()):
    """A GenEval-style prompt for ``scene``: ``a photo of`` its shape groups
    (``a red circle``, ``two squares``) joined by ``and``, one pair of lone
    objects put in relation (``a circle left of a square``) when they share
    a row or column.

    Without ``rng`` every detail is kept and the order is fixed. With it the
    caption is *sparse*, like real captions: each colour word is dropped with
    probability ``color_drop``, the relation with ``relation_drop``, and the
    phrases are shuffled. Colours of ``unnamed_pairs`` (colour, shape) are
    never named: what captions systematically leave out.
    """
    def dropped(p):
        return rng is not None and rng.random() < p

    groups = {s: [o for o in scene.objects if o.shape == s] for s in SHAPES}
    groups = {s: objs for s, objs in groups.items() if objs}

    def phrase(objs):
        color = objs[0].color
        named = (all(o.color == color for o in objs)
                 and (color, objs[0].shape) not in unnamed_pairs
                 and not dropped(color_drop))
        words = ([color] if named else []) + [objs[0].shape]
        if len(objs) == 1:
            return 'a ' + ' '.join(words)
        return f'{NUMBERS[len(objs)]} ' + ' '.join(words) + 's'

    lone = [objs[0] for objs in groups.values() if len(objs) == 1]
    pairs = [(a, b) for a in lone for b in lone
             if a.shape != b.shape and relation(a, b)]
    phrases = []
    if pairs and not dropped(relation_drop):
        a, b = rng.choice(pairs) if rng is not None else pairs[0]
        phrases.append(f'{phrase([a])} {relation(a, b)} {phrase([b])}')
        groups.pop(a.shape)
        groups.pop(b.shape)
    phrases += [phrase(objs) for objs in groups.values()]
    if rng is not None:
        rng.shuffle(phrases)
    return 'a photo of ' + ' and '.join(phrases)


@DATASETS.register_module()
class ShapeScenes(Source):
    """``num_scenes`` random scenes, scene ``i`` seeded by ``(seed, i)``.

    The raw sample holds the rendered ``img`` and, when ``captioned``, its
    dense ``caption`` and the one-turn conversation ``(question, caption)``;
    image-only scenes are what the RecA objective needs.

    Args:
        include_held_out: also draw the :data:`HELD_OUT_PAIRS`; off for any
            training split, so GenEval-Shapes' ``color_attr`` stays unseen.
    """

    def __init__(self, num_scenes=1000, seed=0, canvas_size=64, grid=4,
                 max_objects=4, captioned=True,
                 question='Describe this image in detail.',
                 include_held_out=False, pipeline=()):
        super().__init__(pipeline)
        self.num_scenes = num_scenes
        self.seed = seed
        self.canvas_size = canvas_size
        self.grid = grid
        self.max_objects = max_objects
        self.captioned = captioned
        self.question = question
        self.pairs = ALL_PAIRS if include_held_out else TRAIN_PAIRS

    def __len__(self):
        return self.num_scenes

    def scene(self, index):
        return random_scene(random.Random(f'{self.seed}:{index}'), self.grid,
                            self.max_objects, self.pairs)

    def raw(self, index):
        scene = self.scene(index)
        sample = dict(img=render(scene, self.canvas_size))
        if self.captioned:
            caption = describe(scene)
            sample.update(caption=caption,
                          conversations=[(self.question, caption)])
        return sample
