"""What a toy checkpoint's generation reads: the text, the image, or neither.

    python projects/janus_toy/probe.py configs/reca/janus_toy.py \\
        [CHECKPOINT ...] [--num-scenes 512] [--cfg-options KEY=VALUE ...]

Teacher-forced over fresh scenes (``GenEvalShapesScenes`` seed 99, every
colour-shape pair), it reports how often the generation head's top object
code is the true one at slots that hold an object (which object, given
that one is drawn there), under four conditions:

- ``text``: the scene's full caption (every colour named, held-out pairs
  included: what GenEval-Shapes prompts ask for);
- ``text wrong``: the caption of another scene;
- ``image``: the scene's own understanding embeddings with the generic
  instruction (RecA's condition);
- ``image wrong``: another scene's embeddings.

Slots of :data:`HELD_OUT_PAIRS` objects and of training pairs are counted
apart: the held-out ``text`` column is what ``color_attr`` needs. ``text``
minus ``text wrong`` is how much generation reads the prompt.
The config's own model (its ``pretrained`` weights) is probed first, as
the baseline.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from mmengine.config import DictAction
from PIL import Image

from reca_toolkit.datasets.shapes import HELD_OUT_PAIRS, caption, render
from reca_toolkit.datasets.transforms import ImageViews
from reca_toolkit.engine.inference import load_model
from reca_toolkit.models.umm.base import run_backbone

# Run as a script, this file and the configs' custom_imports import
# `projects.janus_toy` from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from projects.janus_toy.janus_toy import GenEvalShapesScenes  # noqa: E402

CONDITIONS = ('text', 'text wrong', 'image', 'image wrong')


def scene_batch(num_scenes, und_size, gen_size=64):
    """Scenes, their full captions, both views in [-1, 1], and which slots
    hold a held-out pair (1), a training pair (0) or nothing (-1)."""
    source = GenEvalShapesScenes(num_scenes=num_scenes, seed=99,
                                 include_held_out=True)
    views = ImageViews(und_size=und_size, gen_size=gen_size)
    captions, und, gen, kinds = [], [], [], []
    for i in range(num_scenes):
        scene = source.scene(i)
        sample = views(dict(img=Image.fromarray(
            render(scene, source.canvas_size))))
        captions.append(caption(scene))
        und.append(sample['und_pixels'])
        gen.append(sample['gen_pixels'])
        kind = np.full(scene.grid ** 2, -1)
        for obj in scene.objects:
            held = (obj.color, obj.shape) in HELD_OUT_PAIRS
            kind[obj.row * scene.grid + obj.col] = int(held)
        kinds.append(kind)
    def pixels(views):
        return torch.stack(views).float() / 127.5 - 1

    return captions, pixels(und), pixels(gen), torch.tensor(np.stack(kinds))


@torch.no_grad()
def top_codes(umm, condition, codes):
    """The generation head's top object code (code 0, the empty slot,
    left out) at each position, teacher-forced."""
    generator = umm.generator
    # As in the generator's loss: the prompt's last state predicts the first
    # code, the state of code i predicts code i + 1.
    tail = generator.embed(codes[:, :-1], condition.embeds.dtype)
    hidden = run_backbone(umm.language_model, condition, tail,
                          use_cache=False).last_hidden_state
    logits = generator.head(hidden[:, -codes.shape[1]:])
    # Where objects go is the scene's chance, not the prompt's: which object
    # is drawn, given that one is, is what a condition decides.
    return logits[..., 1:].argmax(-1) + 1


@torch.no_grad()
def probe(umm, captions, und, gen, kinds, instruction, batch_size=64):
    """Object-slot accuracy per condition, held-out and training pairs."""
    codes = umm.gen_tokenizer.encode(gen)
    embeds = umm.encode_understanding(und)
    wrong = torch.roll(torch.arange(len(captions)), 1)
    hits = {c: [] for c in CONDITIONS}
    for start in range(0, len(captions), batch_size):
        rows = slice(start, start + batch_size)
        own = list(range(len(captions)))[rows]
        other = wrong[rows].tolist()
        conditions = {
            'text': umm.text_condition([captions[i] for i in own]),
            'text wrong': umm.text_condition([captions[i] for i in other]),
            'image': umm.image_condition(embeds[own],
                                         [instruction] * len(own)),
            'image wrong': umm.image_condition(embeds[other],
                                               [instruction] * len(own)),
        }
        for name, condition in conditions.items():
            hits[name].append(top_codes(umm, condition, codes[rows])
                              == codes[rows])
    result = {}
    for name, parts in hits.items():
        correct = torch.cat(parts)
        for held, label in ((1, 'held-out'), (0, 'train')):
            result[(name, label)] = float(correct[kinds == held].float()
                                          .mean())
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoints', nargs='*')
    parser.add_argument('--num-scenes', type=int, default=512)
    parser.add_argument('--und-size', type=int, default=32,
                        help='understanding view in px (the RecA default)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    captions, und, gen, kinds = scene_batch(args.num_scenes, args.und_size)
    columns = [(c, p) for c in CONDITIONS for p in ('train', 'held-out')]
    print('| checkpoint | ' + ' | '.join(f'{c} ({p})' for c, p in columns)
          + ' |')
    print('|' + '---|' * (len(columns) + 1))
    for checkpoint in [None] + args.checkpoints:
        model, cfg = load_model(args.config, checkpoint,
                                cfg_options=args.cfg_options)
        instruction = cfg.model.objectives.get('recon', {}).get(
            'generic_instruction', 'Generate an image.')
        result = probe(model.umm, captions, und, gen, kinds, instruction)
        name = checkpoint or cfg.model.umm.get('pretrained') or 'random init'
        print(f'| {name} | ' + ' | '.join(
            f'{result[c]:.3f}' for c in columns) + ' |', flush=True)


if __name__ == '__main__':
    main()
