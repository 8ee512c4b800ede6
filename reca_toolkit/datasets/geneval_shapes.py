"""GenEval-Shapes: GenEval's schema and scoring on rendered shape scenes.

The six GenEval tags with GenEval-style templates over the shapes and
colours of :mod:`reca_toolkit.datasets.shapes`:

=============  ==================================  ========================
tag            template                            metadata
=============  ==================================  ========================
single_object  a photo of a {shape}                include 1
two_object     a photo of a {s1} and a {s2}        include s1, s2; s1 != s2
counting       a photo of {two..four} {shape}s     include n, exclude n + 1
colors         a photo of a {color} {shape}        include 1 with colour
position       a photo of a {s1} {relation} a      include s2, then s1
               {s2}                                positioned against it
color_attr     a photo of a {c1} {s1} and a {c2}   both coloured, c1 != c2,
               {s2}                                s1 != s2, >= 1 held-out
                                                   pair
=============  ==================================  ========================

The suite is fixed by ``suite_seed``: tag ``t``'s prompts come from a stream
seeded by ``(suite_seed, t)``, so a smaller suite is a per-tag prefix of a
larger one (the in-training subset is part of the full benchmark). Scores
are *not* comparable with GenEval's: nothing here has detector error.
"""
import json
import random

from reca_toolkit.datasets.geneval_prompts import GenEvalRecords
from reca_toolkit.datasets.prompts import sha256_text
from reca_toolkit.datasets.shapes import (ALL_PAIRS, HELD_OUT_PAIRS, NUMBERS,
                                          SHAPES, ShapeObject, ShapeScene,
                                          render)
from reca_toolkit.registry import DATASETS

TAGS = ('single_object', 'two_object', 'counting', 'colors', 'position',
        'color_attr')
RELATIONS = ('left of', 'right of', 'above', 'below')
# relation -> (row step, column step) from the target to the object.
STEPS = {'left of': (0, -1), 'right of': (0, 1), 'above': (-1, 0),
         'below': (1, 0)}


def make_prompt(tag, rng, pairs=ALL_PAIRS, held_out=HELD_OUT_PAIRS):
    """One GenEval metadata record of ``tag``.

    Coloured objects take their (colour, shape) from ``pairs``; a
    ``color_attr`` record names at least one ``held_out`` pair, or, with
    ``held_out`` empty (training scenes), two of ``pairs``.
    """
    if tag == 'single_object':
        shape = rng.choice(SHAPES)
        return dict(tag=tag, include=[dict({'class': shape}, count=1)],
                    prompt=f'a photo of a {shape}')
    if tag == 'two_object':
        a, b = rng.sample(SHAPES, 2)
        return dict(tag=tag, include=[dict({'class': a}, count=1),
                                      dict({'class': b}, count=1)],
                    prompt=f'a photo of a {a} and a {b}')
    if tag == 'counting':
        shape, n = rng.choice(SHAPES), rng.randint(2, 4)
        return dict(tag=tag, include=[dict({'class': shape}, count=n)],
                    exclude=[dict({'class': shape}, count=n + 1)],
                    prompt=f'a photo of {NUMBERS[n]} {shape}s')
    if tag == 'colors':
        color, shape = rng.choice(pairs)
        return dict(tag=tag,
                    include=[dict({'class': shape}, count=1, color=color)],
                    prompt=f'a photo of a {color} {shape}')
    if tag == 'position':
        a, b = rng.sample(SHAPES, 2)
        relation = rng.choice(RELATIONS)
        return dict(tag=tag, include=[
            dict({'class': b}, count=1),
            dict({'class': a}, count=1, position=[relation, 0])],
            prompt=f'a photo of a {a} {relation} a {b}')
    if tag == 'color_attr':
        first = rng.choice(sorted(held_out)) if held_out \
            else rng.choice(pairs)
        other = rng.choice([p for p in pairs
                            if p[0] != first[0] and p[1] != first[1]])
        (c1, s1), (c2, s2) = rng.sample([first, other], 2)
        return dict(tag=tag, include=[
            dict({'class': s1}, count=1, color=c1),
            dict({'class': s2}, count=1, color=c2)],
            prompt=f'a photo of a {c1} {s1} and a {c2} {s2}')
    raise ValueError(f"unknown GenEval tag '{tag}'; tags are {TAGS}")


def make_suite(num_prompts, suite_seed=0):
    """``num_prompts`` records, split evenly over the tags, tag by tag."""
    suite = []
    for t, tag in enumerate(TAGS):
        rng = random.Random(f'geneval_shapes:{suite_seed}:{tag}')
        count = num_prompts // len(TAGS) + (t < num_prompts % len(TAGS))
        suite += [make_prompt(tag, rng) for _ in range(count)]
    return suite


def _compose(metadata, rng, grid, pairs):
    """One attempt at :func:`ground_truth_scene`; None if a positioned
    object finds no free slot next to its target."""
    free = set(range(grid * grid))
    placed = []  # slots of each include clause
    objects = []
    for req in metadata['include']:
        slots = []
        if 'position' in req:
            relation, target = req['position']
            (tr, tc), (dr, dc) = divmod(placed[target][0], grid), \
                STEPS[relation]
            options = [(tr + k * dr) * grid + tc + k * dc
                       for k in range(1, grid)
                       if 0 <= tr + k * dr < grid and 0 <= tc + k * dc < grid
                       and (tr + k * dr) * grid + tc + k * dc in free]
            if not options:
                return None
            slots.append(rng.choice(options))
        while len(slots) < req['count']:
            slots.append(rng.choice(sorted(free - set(slots))))
        for slot in slots:
            free.discard(slot)
            color = req.get('color') or rng.choice(
                [c for c, s in pairs if s == req['class']])
            objects.append(ShapeObject(req['class'], color,
                                       *divmod(slot, grid)))
        placed.append(slots)
    return ShapeScene(tuple(objects), grid)


def ground_truth_scene(metadata, rng, grid=4, attempts=100,
                       pairs=ALL_PAIRS):
    """A scene that satisfies ``metadata``: exactly the included objects;
    a positioned object in its target's row or column, on the named side;
    objects whose colour the metadata leaves open take one of ``pairs``."""
    for _ in range(attempts):
        scene = _compose(metadata, rng, grid, pairs)
        if scene is not None:
            return scene
    raise ValueError(f"no {grid}x{grid} scene found for "
                     f"'{metadata['prompt']}' in {attempts} attempts")


@DATASETS.register_module()
class GenEvalShapesPrompts(GenEvalRecords):
    """The GenEval-Shapes prompt suite, generated in code.

    Args:
        num_prompts: suite size, split evenly over the six tags.
        suite_seed: fixes the suite.
        canvas_size, grid: the scenes' geometry (ground truth renders).
        num_images, seed, seed_policy, source: see :class:`PromptDataset`;
            seeds follow the prompt index by default, because the suite
            repeats prompts (there are only 3 single-object prompts).
        prompt_shift: see
            :class:`~reca_toolkit.datasets.geneval_prompts.GenEvalRecords`.
    """

    def __init__(self, num_prompts=300, suite_seed=0, num_images=1, seed=0,
                 seed_policy='index', canvas_size=64, grid=4,
                 source='geneval_shapes', prompt_shift=0):
        super().__init__(source, num_images, seed, seed_policy, prompt_shift)
        self.suite_seed = suite_seed
        self.canvas_size = canvas_size
        self.grid = grid
        self.records = make_suite(num_prompts, suite_seed)

    def prompt_sha256(self):
        return sha256_text(''.join(json.dumps(r) + '\n'
                                   for r in self.records))

    def ground_truth(self, index, sample=0):
        """The ``sample``-th rendered scene satisfying prompt ``index``."""
        rng = random.Random(f'gt:{self.suite_seed}:{index}:{sample}')
        return render(ground_truth_scene(self.records[index], rng,
                                         self.grid), self.canvas_size)

    def card_info(self):
        return dict(super().card_info(), suite_seed=self.suite_seed,
                    canvas_size=self.canvas_size, grid=self.grid)
