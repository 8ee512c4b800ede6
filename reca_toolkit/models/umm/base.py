"""The UMM interface: the seam that makes RecA work for any unified model.

An adapter owns one loaded unified multimodal model and exposes it in the
terms the objectives need. RecA, image-to-text and text-to-image are written
once against this class (``models/objectives``); a new model family is a new
subclass plus the components it registers.
"""
from dataclasses import dataclass

import torch
from mmengine.logging import print_log
from torch import nn


@dataclass
class Condition:
    """A batch of generation prompts in the LLM's input space.

    Rows are left-padded so that every prompt ends at the last position,
    where generation starts.

    Attributes:
        embeds: ``[B, L, D]`` prompt embeddings.
        mask: ``[B, L]`` 1 for real positions, 0 for padding.
        content: ``[B, L]`` bool, the positions a classifier-free "null"
            prompt blanks out (everything the prompt says, not its frame).
    """
    embeds: torch.Tensor
    mask: torch.Tensor
    content: torch.Tensor

    def __len__(self):
        return self.embeds.shape[0]


class BaseUMM(nn.Module):
    """What an adapter implements. Pixels are ``[B, 3, H, W]`` in [-1, 1].

    Subclasses list their parts in :meth:`parts` (name -> module, the names a
    user writes in ``frozen=``); :meth:`apply_freeze` then freezes them, keeps
    frozen parts in eval mode and logs a table of parameter counts.
    """

    def parts(self):
        """Name -> module for every part a user may freeze or train."""
        raise NotImplementedError

    def encode_understanding(self, und_pixels=None, und_features=None):
        """Pixels -> ``[B, N, D]`` dense prompt, in the LLM's input space;
        or the same from cached :meth:`understanding_features`."""
        raise NotImplementedError

    def understanding_features(self, und_pixels):
        """The output of the frozen part of the understanding encoder: what
        a feature cache stores (``tools/misc/cache_features.py``)."""
        raise NotImplementedError

    def generation_targets(self, gen_pixels):
        """What the frozen generation tokenizer makes of ``gen_pixels`` (VQ
        codes, latents): what a feature cache stores."""
        raise NotImplementedError

    def image_condition(self, und_embeds, instructions):
        """Chat-template understanding embeddings plus an instruction."""
        raise NotImplementedError

    def text_condition(self, prompts):
        """Chat-template text prompts."""
        raise NotImplementedError

    def null_condition(self, condition):
        """The classifier-free "unconditional" version of ``condition``."""
        raise NotImplementedError

    def generation_loss(self, condition, gen_pixels=None, gen_targets=None):
        """The model's native generation objective on ``gen_pixels`` or on
        cached :meth:`generation_targets`; dict of tensors."""
        raise NotImplementedError

    def understanding_loss(self, und_pixels, conversations):
        """Image-to-text cross-entropy.

        ``conversations[i]`` is a list of ``(user, assistant)`` turns about
        image ``i``; the image belongs to the first user turn.
        """
        raise NotImplementedError

    def generate(self, condition, generator=None, **sampling):
        """Sample images for ``condition``; returns pixels in [-1, 1]."""
        raise NotImplementedError

    def save_pretrained(self, out_dir):
        """Write the model in its native Hugging Face layout."""
        raise NotImplementedError

    def reconstruct(self, und_pixels, instruction, generator=None,
                    **sampling):
        """Image -> understanding embeddings -> generated image."""
        embeds = self.encode_understanding(und_pixels)
        condition = self.image_condition(embeds,
                                         [instruction] * len(und_pixels))
        return self.generate(condition, generator=generator, **sampling)

    # freeze policy ------------------------------------------------------------
    def apply_freeze(self, frozen):
        parts = self.parts()
        unknown = sorted(set(frozen) - set(parts))
        if unknown:
            raise ValueError(f'frozen={list(frozen)} names unknown parts '
                             f'{unknown}; valid parts: {sorted(parts)}')
        self.frozen = tuple(frozen)
        for name in frozen:
            parts[name].requires_grad_(False)
            parts[name].eval()
        print_log('\n' + self.parameter_table(), logger='current')

    def is_frozen(self, name):
        return name in self.frozen

    def train(self, mode=True):
        super().train(mode)
        for name in getattr(self, 'frozen', ()):
            self.parts()[name].eval()
        return self

    def parameter_table(self):
        rows = [('part', 'trainable', 'frozen', 'dtype')]
        total_train = total_frozen = 0
        for name, module in self.parts().items():
            params = list(module.parameters())
            train = sum(p.numel() for p in params if p.requires_grad)
            frozen = sum(p.numel() for p in params if not p.requires_grad)
            total_train += train
            total_frozen += frozen
            dtypes = sorted({str(p.dtype).replace('torch.', '')
                             for p in params})
            rows.append((name, f'{train:,}', f'{frozen:,}', ','.join(dtypes)))
        rows.append(('total', f'{total_train:,}', f'{total_frozen:,}', ''))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                 for r in rows]
        lines.insert(1, '-' * len(lines[0]))
        return f'{type(self).__name__} parameters\n' + '\n'.join(lines)
