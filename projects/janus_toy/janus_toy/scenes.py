"""The toy's training scenes: GenEval-Shapes scenes with two kinds of text.

The tiny Janus of this project is pretrained on these (its model card,
``projects/janus_toy/README.md``) and RecA post-trains it on them
(``configs/reca/janus_toy.py``). A scene is the ground truth of a random
GenEval-Shapes record (:mod:`reca_toolkit.datasets.geneval_shapes`), so
the toy learns the benchmark's kind of scene, but from training streams,
never the suite's. Its text is of the two kinds real pretraining data has:
captions that can miss details, at random and systematically, and dense
descriptions that name everything.
"""
import random

from reca_toolkit.datasets.geneval_shapes import (TAGS, ground_truth_scene,
                                                  make_prompt)
from reca_toolkit.datasets.shapes import (ALL_PAIRS, HELD_OUT_PAIRS,
                                          TRAIN_PAIRS, caption, describe,
                                          render)
from reca_toolkit.datasets.source import Source
from reca_toolkit.registry import DATASETS


@DATASETS.register_module()
class GenEvalShapesScenes(Source):
    """Training scenes of the GenEval-Shapes kind, with text of two kinds.

    Scene ``i`` (seeded by ``(seed, i)``) is the ground truth of a random
    record of a random tag, drawn from training streams, never the suite's.
    Its raw sample holds the rendered ``img``; ``caption``, a GenEval-style
    prompt (:func:`~reca_toolkit.datasets.shapes.caption`) for
    text-to-image; and ``conversations``, one turn whose answer is the dense
    description (:func:`~reca_toolkit.datasets.shapes.describe`) for
    image-to-text. An image's caption is fixed, as in a captioned dataset.

    Args:
        include_held_out: let objects take the :data:`HELD_OUT_PAIRS` too.
        sparse: ``dict(color_drop=p, relation_drop=q)``: captions drop each
            colour word and the relation at random; None keeps every detail.
        unnamed_held_out: captions never name the colour of a held-out pair
            (the dense description still does): a detail captions miss
            systematically rather than at random.
    """

    def __init__(self, num_scenes=10000, seed=0, canvas_size=64, grid=4,
                 include_held_out=False, sparse=None, unnamed_held_out=False,
                 question='Describe this image in detail.', pipeline=()):
        super().__init__(pipeline)
        self.num_scenes = num_scenes
        self.seed = seed
        self.canvas_size = canvas_size
        self.grid = grid
        self.pairs = ALL_PAIRS if include_held_out else TRAIN_PAIRS
        self.sparse = dict(sparse or {})
        unknown = set(self.sparse) - {'color_drop', 'relation_drop'}
        if unknown:
            raise ValueError(f'GenEvalShapesScenes sparse= has unknown keys '
                             f'{sorted(unknown)}; valid: color_drop, '
                             'relation_drop')
        self.unnamed = HELD_OUT_PAIRS if unnamed_held_out else ()
        self.question = question

    def __len__(self):
        return self.num_scenes

    def scene(self, index):
        rng = random.Random(f'scenes:{self.seed}:{index}')
        record = make_prompt(rng.choice(TAGS), rng, self.pairs, held_out=())
        return ground_truth_scene(record, rng, self.grid, pairs=self.pairs)

    def raw(self, index):
        scene = self.scene(index)
        rng = random.Random(f'caption:{self.seed}:{index}') \
            if self.sparse else None
        return dict(
            img=render(scene, self.canvas_size),
            caption=caption(scene, rng, unnamed_pairs=self.unnamed,
                            **self.sparse),
            conversations=[(self.question, describe(scene))])
