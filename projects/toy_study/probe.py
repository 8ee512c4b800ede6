"""What a toy checkpoint's generation reads: the text, the image, or neither.

    python projects/toy_study/probe.py CONFIG [CHECKPOINT ...] \\
        [--num-scenes 512] [--cfg-options KEY=VALUE ...]

Over fresh scenes (``GenEvalShapesScenes`` seed 99, every colour-shape
pair) it scores how well generation predicts the true image at the slots
that hold an object, under four conditions:

- ``text``: the scene's full caption (every colour named, held-out pairs
  included: what GenEval-Shapes prompts ask for);
- ``text wrong``: the caption of another scene;
- ``image``: the scene's own understanding embeddings (the config's
  understanding view) with the generic instruction (RecA's condition);
- ``image wrong``: another scene's embeddings.

Slots of :data:`HELD_OUT_PAIRS` objects and of training pairs are counted
apart: the held-out ``text`` column is what ``color_attr`` needs; ``text``
against ``text wrong`` is how much generation reads the prompt. How a slot
is scored follows the generator:

- autoregressive codes (the Janus toy), :class:`TopObjectCode`: teacher
  forced, whether the head's top object code is the true one (accuracy;
  chance 1/18);
- MAR (the Harmon toy), :class:`TrueLatentLoss`: the diffusion loss of the
  slot's true latent with every token masked (lower is better), and the
  share of slots whose loss is lower under the right text (image) than
  under the wrong one (``wins``; 0.5 reads nothing).

``CONFIG`` is a RecA config of the toy, whose reconstruction view the
``image`` conditions use; every arm of a toy is one architecture, so any
of its checkpoints loads into it. The config's own model (its
``pretrained`` weights) is probed first, as the baseline.
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
from reca_toolkit.models.generators import (AutoregressiveCodeGenerator,
                                            MaskedAutoregressiveGenerator)
from reca_toolkit.models.generators.masked_autoregressive import MaskingDraws
from reca_toolkit.models.umm.base import run_backbone

# Run as a script, this file and the configs' custom_imports import
# `projects.*` from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from projects.janus_toy.janus_toy import GenEvalShapesScenes  # noqa: E402

CONDITIONS = ('text', 'text wrong', 'image', 'image wrong')
KINDS = ((0, 'train'), (1, 'held-out'))


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


def views_of(cfg):
    """The understanding and generation sizes of the config's
    reconstruction views (its ``ImageViews``)."""
    sources = cfg.train_dataloader.dataset.sources
    if 'recon' not in sources:
        raise ValueError(
            f'{cfg.filename} has no reconstruction source '
            '(train_dataloader.dataset.sources.recon) to take the '
            "understanding view from; probe with the toy's RecA config "
            '(every arm of a toy is one architecture)')
    pipeline = sources.recon.pipeline
    views = next(t for t in pipeline if t['type'] == 'ImageViews')
    return views['und_size'], views.get('gen_size', 64)


def generic_instruction(cfg):
    """The config's RecA generic instruction (None: the UMM's own)."""
    return cfg.model.objectives.get('recon', {}).get('generic_instruction')


class TopObjectCode:
    """Autoregressive codes: 1 where the generation head's top object code
    (code 0, the empty slot, left out) is the true one, teacher-forced."""
    metric = 'accuracy'

    def __init__(self, umm, gen):
        self.umm, self.codes = umm, umm.gen_tokenizer.encode(gen)

    def __call__(self, condition, rows):
        umm, codes = self.umm, self.codes[rows]
        # As in the generator's loss: the prompt's last state predicts the
        # first code, the state of code i predicts code i + 1.
        tail = umm.generator.embed(codes[:, :-1], condition.embeds.dtype)
        hidden = run_backbone(umm.language_model, condition, tail,
                              use_cache=False).last_hidden_state
        logits = umm.generator.head(hidden[:, -codes.shape[1]:])
        # Where objects go is the scene's chance, not the prompt's: which
        # object is drawn, given that one is, is what a condition decides.
        return (logits[..., 1:].argmax(-1) + 1 == codes).float()


class TrueLatentLoss:
    """MAR: each slot's diffusion loss of its true latent with every token
    masked, averaged over ``num_timesteps`` timesteps at the centres of
    equal bins of the schedule, with noise seeded once, so that every
    condition is scored on the same draws.

    Every token masked is MAR's first sampling step, where only the
    condition informs a slot (training masks 70-100 %). Which object a
    slot holds is not read off an argmax over candidate latents: with
    nothing visible, the empty slot's mode gives every condition the same
    winner; the loss of the true latent still moves with the condition.
    """
    metric = 'loss'

    def __init__(self, umm, gen, num_timesteps=10, seed=0):
        self.umm = umm
        latents = umm.gen_tokenizer.encode(gen)
        self.grid = tuple(latents.shape[-2:])
        self.tokens = umm.gen_tokenizer.to_tokens(latents)
        b, n, c = self.tokens.shape
        steps = umm.generator.diffloss.diffusion.num_timesteps
        centres = (2 * torch.arange(num_timesteps) + 1) * steps \
            // (2 * num_timesteps)
        self.timesteps = centres.expand(b, n, -1)
        self.noise = torch.randn(b, n, num_timesteps, c,
                                 generator=torch.Generator().manual_seed(seed))

    def __call__(self, condition, rows):
        tokens = self.tokens[rows]
        b, n = tokens.shape[:2]
        draws = MaskingDraws(torch.arange(n).expand(b, n),
                             torch.ones(b, dtype=torch.float64),
                             self.timesteps[rows], self.noise[rows])
        losses = self.umm.generator.token_losses(
            tokens, self.grid, self.umm.generation_middle(condition), draws)
        return losses.view(b, n, -1).mean(-1)


SCORERS = {AutoregressiveCodeGenerator: TopObjectCode,
           MaskedAutoregressiveGenerator: TrueLatentLoss}


def scorer_for(umm, gen):
    kind = type(umm.generator)
    if kind not in SCORERS:
        raise ValueError(f'no probe for a {kind.__name__} generator; '
                         f'probed: {[k.__name__ for k in SCORERS]}')
    return SCORERS[kind](umm, gen)


@torch.no_grad()
def probe(umm, captions, und, gen, kinds, instruction, batch_size=64):
    """The scorer's mean per condition, held-out and training pairs, and
    for losses the ``wins`` of each right condition over its wrong one."""
    score = scorer_for(umm, gen)
    embeds = umm.encode_understanding(und)
    wrong = torch.roll(torch.arange(len(captions)), 1)
    values = {c: [] for c in CONDITIONS}
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
            values[name].append(score(condition, rows))
    values = {name: torch.cat(parts) for name, parts in values.items()}
    if score.metric == 'loss':
        for right in ('text', 'image'):
            values[f'{right} wins'] = (
                values[right] < values[f'{right} wrong']).float()
    return {(name, label): float(value[kinds == held].mean())
            for name, value in values.items() for held, label in KINDS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoints', nargs='*')
    parser.add_argument('--num-scenes', type=int, default=512)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    scenes = None
    for checkpoint in [None] + args.checkpoints:
        model, cfg = load_model(args.config, checkpoint,
                                cfg_options=args.cfg_options)
        if scenes is None:
            scenes = scene_batch(args.num_scenes, *views_of(cfg))
        result = probe(model.umm, *scenes, generic_instruction(cfg))
        if checkpoint is None:
            print('| checkpoint | ' + ' | '.join(
                f'{c} ({p})' for c, p in result) + ' |')
            print('|' + '---|' * (len(result) + 1))
        name = checkpoint or cfg.model.umm.get('pretrained') or 'random init'
        print(f'| {name} | ' + ' | '.join(f'{v:.3f}' for v in result.values())
              + ' |', flush=True)

if __name__ == '__main__':
    main()
