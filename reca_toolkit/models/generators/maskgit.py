"""Masked generative image modelling over discrete codes (MaskGIT).

Chang et al. (2022), "MaskGIT: Masked Generative Image Transformer", as
Show-o trains and samples its image codes (showlab/Show-o:
training/utils.py ``mask_or_random_replace_tokens``,
models/modeling_showo.py ``t2i_generate``, models/sampling.py):

* training: each sample draws ``t ~ U[0, 1)``, masks
  ``round(N * cos(pi t / 2))`` of its ``N`` codes (at least one, at a mask
  ratio of at least ``min_masking_rate``) at uniformly random positions,
  and the cross-entropy is taken on the masked positions only, with no
  shift: the state at a masked position predicts its own code;
* sampling: all codes start masked; each of ``T`` steps samples every
  masked code from the (guided) logits, keeps the most confident and
  re-masks ``floor(N * cos(pi / 2 * (step + 1) / T))`` of the new ones,
  ranked by log-probability plus annealed Gumbel noise.

The network belongs to the adapter: a callable ``predict(codes, mask)``
that embeds the codes (its mask token where ``mask``), runs the model and
returns logits ``[B, N, V]`` over its vocabulary, in which the codes are
the classes ``class_offset .. class_offset + num_codes - 1`` (Show-o's
codes follow the text vocabulary in one output layer, and its training
cross-entropy is over that whole layer). Every random choice of
:meth:`MaskGITGenerator.loss` comes from each sample's seed
(:meth:`~MaskGITGenerator.draw`), never from the global RNG.
"""
import math
from dataclasses import dataclass

import torch
from torch import nn

from reca_toolkit.models.losses import cross_entropy
from reca_toolkit.registry import GENERATORS

from .flow_matching import guide

ANNEALINGS = ('showo', 'maskgit')


def cosine_mask_ratio(t):
    """MaskGIT's cosine schedule: the share of codes masked at time ``t``
    in [0, 1] (``cos(pi t / 2)``: all at 0, none at 1)."""
    return torch.cos(torch.as_tensor(t, dtype=torch.float64) * math.pi / 2)


@dataclass
class MaskGITDraws:
    """Per-sample random choices of one MaskGIT loss, ``B`` rows of ``N``
    codes.

    Attributes:
        t: ``[B]`` float64 times in [0, 1).
        ranks: ``[B, N]`` a random permutation of ``0 .. N - 1`` per row;
            a code is masked when its rank is below the row's count.
        num_masked: ``[B]`` how many codes each row masks.
    """
    t: torch.Tensor
    ranks: torch.Tensor
    num_masked: torch.Tensor

    @property
    def mask(self):
        """``[B, N]`` bool, True where masked."""
        return self.ranks < self.num_masked.to(self.ranks.device)[:, None]


def mask_by_confidence(num_masked, confidence):
    """``[B, N]`` bool: True at the ``num_masked[b]`` least confident
    positions of each row (ties at the cut-off stay unmasked)."""
    cutoff = confidence.sort(dim=-1).values.gather(
        1, num_masked.long().view(-1, 1))
    return confidence < cutoff


def gumbel_noise(shape, generator=None, device=None):
    """Standard Gumbel noise ``-log(-log(u))``, ``u ~ U[0, 1)`` drawn with
    ``generator`` (clamped as Show-o does, so ``u = 0`` stays finite)."""
    u = torch.rand(shape, generator=generator,
                   device=generator.device if generator is not None
                   else device)
    return -(-u.clamp(min=1e-20).log()).clamp(min=1e-20).log()


@GENERATORS.register_module()
class MaskGITGenerator(nn.Module):
    """MaskGIT's masked-code cross-entropy and its confidence sampler.

    It holds no parameters: the network is the adapter's (``predict``), so
    freezing, checkpointing and export stay with the adapter.

    Args:
        num_codes: codebook size of the image tokenizer.
        min_masking_rate: the training mask ratio is at least this (Show-o's
            ``training.min_masking_rate``; RecA: 0).
        num_inference_steps: sampling steps (Show-o's GenEval/DPG: 50).
        guidance_scale: classifier-free guidance, in the toolkit's form
            ``uncond + s * (cond - uncond)``; 1 disables it. Show-o and
            MUSE write ``(1 + w) * cond - w * uncond``, which is
            ``s = w + 1``: Show-o's published ``guidance_scale=5`` is 6 here.
        temperature: scale of the Gumbel noise on the confidences.
        annealing: how the noise scale decays over the steps: ``'showo'``
            (the default, Show-o's ``t2i_generate``, which overwrites its
            temperature each step, so step ``i`` uses
            ``temperature * prod_{j <= i} (1 - (j + 1) / T)``) or
            ``'maskgit'`` (MaskGIT's ``temperature * (1 - (i + 1) / T)``).
    """

    def __init__(self, num_codes, min_masking_rate=0.0,
                 num_inference_steps=50, guidance_scale=6.0,
                 temperature=1.0, annealing='showo'):
        super().__init__()
        if annealing not in ANNEALINGS:
            raise ValueError(f"annealing='{annealing}' is not one of "
                             f'{ANNEALINGS}')
        if not 0 <= min_masking_rate <= 1:
            raise ValueError('min_masking_rate must be in [0, 1], got '
                             f'{min_masking_rate}')
        self.num_codes = int(num_codes)
        self.min_masking_rate = float(min_masking_rate)
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.temperature = float(temperature)
        self.annealing = annealing

    # training ------------------------------------------------------------
    def num_masked(self, t, num_tokens):
        """``round(N * max(cos(pi t / 2), min_masking_rate))``, at least 1
        (Show-o rounds half to even, as ``torch.round`` does)."""
        ratio = cosine_mask_ratio(t).clamp(min=self.min_masking_rate)
        return torch.round(num_tokens * ratio).clamp(min=1).long()

    def draw(self, seeds, num_tokens, device=None):
        """Every random choice of :meth:`loss`, from one CPU generator per
        sample seeded with ``seeds[i]``, in this order: one float64 uniform
        ``t``, then ``num_tokens`` float32 uniforms whose argsort is the
        row's permutation (Show-o's ``rand(N).argsort()``)."""
        times, ranks = [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            times.append(torch.rand((), generator=g, dtype=torch.float64))
            ranks.append(torch.rand(num_tokens, generator=g).argsort())
        t = torch.stack(times)
        return MaskGITDraws(t, torch.stack(ranks).to(device),
                            self.num_masked(t, num_tokens).to(device))

    def loss(self, codes, predict, draws, class_offset=0):
        """Cross-entropy of ``predict`` on the masked codes of ``codes``
        (``[B, N]``), the mean over the masked codes of the global batch.

        ``draws``: :class:`MaskGITDraws` (:meth:`draw`) or per-sample seeds.
        """
        if not isinstance(draws, MaskGITDraws):
            draws = self.draw(draws, codes.shape[1], codes.device)
        mask = draws.mask.to(codes.device)
        logits = predict(codes, mask)
        loss, acc = cross_entropy(logits[mask], codes[mask] + class_offset)
        return dict(loss=loss, acc=acc,
                    mask_ratio=mask.float().mean().detach())

    # sampling ------------------------------------------------------------
    def noise_scales(self, steps):
        """The Gumbel noise scale of each sampling step."""
        linear = [self.temperature * (1 - (i + 1) / steps)
                  for i in range(steps)]
        if self.annealing == 'maskgit':
            return linear
        return [self.temperature * math.prod(1 - (j + 1) / steps
                                             for j in range(i + 1))
                for i in range(steps)]

    @torch.no_grad()
    def sample(self, num_rows, num_tokens, predict, generator=None,
               class_offset=0, num_inference_steps=None, guidance_scale=None,
               **unused):
        """``[num_rows, num_tokens]`` codes by iterative decoding.

        With ``guidance_scale != 1``, ``predict`` sees ``2 * num_rows`` rows
        (the codes twice: conditional rows, then the null rows, the order
        the adapter built its condition in) and the logits are
        :func:`~reca_toolkit.models.generators.flow_matching.guide`'s
        combination. Each step draws, with ``generator``, first one code
        per position (``multinomial``), then the Gumbel noise of the
        confidences. Returns the last step's codes, as Show-o does: they
        fill the positions the last step would have re-masked.
        """
        steps = num_inference_steps or self.num_inference_steps
        scale = self.guidance_scale if guidance_scale is None \
            else float(guidance_scale)
        device = generator.device if generator is not None else None
        codes = torch.zeros(num_rows, num_tokens, dtype=torch.long,
                            device=device)
        unknown = torch.ones_like(codes, dtype=torch.bool)
        for step, noise_scale in enumerate(self.noise_scales(steps)):
            if scale != 1:
                logits = predict(codes.repeat(2, 1), unknown.repeat(2, 1))
                logits = guide(*logits.float().chunk(2), scale)
            else:
                logits = predict(codes, unknown).float()
            logits = logits[..., class_offset:class_offset + self.num_codes]
            probs = logits.softmax(-1).to(device)
            sampled = torch.multinomial(probs.flatten(0, 1), 1,
                                        generator=generator)
            sampled = torch.where(unknown, sampled.view(num_rows, -1), codes)
            confidence = probs.gather(-1, sampled[..., None])[..., 0]
            confidence = torch.where(
                unknown, confidence.clamp(min=1e-20).log(),
                torch.finfo(confidence.dtype).max)
            confidence = confidence + noise_scale * gumbel_noise(
                confidence.shape, generator, device)
            ratio = float(cosine_mask_ratio((step + 1) / steps))
            remask = torch.full((num_rows, ), math.floor(num_tokens * ratio),
                                device=codes.device)
            # Keep at least one new code and re-mask at least one while any
            # are left.
            remask = torch.maximum(
                torch.ones_like(remask),
                torch.minimum(unknown.sum(-1) - 1, remask))
            unknown = mask_by_confidence(remask, confidence)
            codes = sampled
        return codes

    def extra_repr(self):
        return (f'num_codes={self.num_codes}, '
                f'num_inference_steps={self.num_inference_steps}, '
                f'guidance_scale={self.guidance_scale}, '
                f'annealing={self.annealing}')


__all__ = ['MaskGITDraws', 'MaskGITGenerator', 'cosine_mask_ratio',
           'gumbel_noise', 'mask_by_confidence']
