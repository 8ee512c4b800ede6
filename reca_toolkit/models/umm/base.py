"""The UMM interface: the seam that makes RecA work for any unified model.

An adapter owns one loaded unified multimodal model and exposes it in the
terms the objectives need. RecA, image-to-text and text-to-image are written
once against this class (``models/objectives``); a new model family is a new
subclass plus the components it registers. What the engine needs to know
about a model (which module's positions are its tokens, which modules are
its repeated blocks, which parameters take no weight decay, which switches
make it slow) the adapter declares here too, so the engine has no
per-family code.
"""
from dataclasses import dataclass, field

import torch
from mmengine.logging import print_log
from torch import nn

from reca_toolkit.models.lora import add_lora
from reca_toolkit.models.losses import head_cross_entropy


def position_ids(mask):
    """Positions that skip padding: 0 at each row's first real token."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class Condition:
    """A batch of generation prompts in the backbone's input space.

    Rows are left-padded, so every prompt ends at the last position, where
    generation starts; conditions of different lengths (a prompt and a
    family's shorter "null" prompt) concatenate with :meth:`cat`.

    Attributes:
        embeds: ``[B, L, D]`` prompt embeddings.
        mask: ``[B, L]`` 1 for real positions, 0 for padding.
        positions: ``[B, L]`` position ids, or None for consecutive ones
            over the real positions (:func:`position_ids`). Families that
            give a whole image one rotary position (BAGEL) set them.
        blocks: ``[B, L]`` int or None: positions sharing a value ``k > 0``
            attend to each other in both directions (Show-o's image codes,
            BAGEL's ViT split); 0 is causal.
        visible: ``[B, L]`` int or None: 1 at positions every position
            attends to, earlier ones too (Show-o's CLIP block, which even
            the task token before it sees).
            :func:`attention_bias` turns mask, blocks and visible into the
            additive mask a backbone takes.
        extras: adapter-private ``[B, L, ...]`` tensors that travel with the
            rows (Janus: which positions its null prompt blanks).
    """
    embeds: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor = None
    blocks: torch.Tensor = None
    visible: torch.Tensor = None
    extras: dict = field(default_factory=dict)

    def __len__(self):
        return self.embeds.shape[0]

    @property
    def position_ids(self):
        return position_ids(self.mask) if self.positions is None \
            else self.positions

    def take(self, rows):
        """The condition of ``rows`` (a list or tensor of row indices)."""
        rows = torch.as_tensor(rows, device=self.embeds.device)
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Condition(
            self.embeds[rows], self.mask[rows], pick(self.positions),
            pick(self.blocks), pick(self.visible),
            {k: v[rows] for k, v in self.extras.items()})

    @staticmethod
    def cat(conditions):
        """Rows of every condition, left-padded to the longest."""
        length = max(c.embeds.shape[1] for c in conditions)

        def pad(tensors):
            return torch.cat([
                torch.nn.functional.pad(
                    t, (0, 0) * (t.ndim - 2) + (length - t.shape[1], 0))
                for t in tensors])

        def optional(name):
            if all(getattr(c, name) is None for c in conditions):
                return None
            return pad([c.position_ids if name == 'positions' else
                        getattr(c, name) if getattr(c, name) is not None else
                        torch.zeros_like(c.mask) for c in conditions])

        keys = set(conditions[0].extras)
        if any(set(c.extras) != keys for c in conditions):
            raise ValueError('conditions to concatenate carry different '
                             f'extras: {[sorted(c.extras) for c in conditions]}')
        return Condition(
            pad([c.embeds for c in conditions]),
            pad([c.mask for c in conditions]), optional('positions'),
            optional('blocks'), optional('visible'),
            {k: pad([c.extras[k] for c in conditions]) for k in keys})

    def with_null(self, null, rows):
        """This condition with ``rows`` (bool per row) replaced by ``null``'s
        rows, whatever its length."""
        rows = torch.as_tensor(rows, dtype=torch.bool)
        both = Condition.cat([self, null])
        index = torch.arange(len(self)) + rows.long() * len(self)
        return both.take(index)


def attention_bias(mask, blocks, dtype, visible=None):
    """``[B, 1, L, L]`` additive attention mask: causal, padding hidden,
    full attention within each block of equal ``blocks`` value > 0, and the
    ``visible`` positions (``[B, L]``, nonzero) seen from every position.
    ``blocks=None`` is all causal.

    Float, not bool: transformers' eager attention ignores bool 4-D masks.
    """
    length = mask.shape[1]
    allowed = torch.ones(length, length, dtype=torch.bool,
                         device=mask.device).tril().expand(len(mask), -1, -1)
    if blocks is not None:
        allowed = allowed | ((blocks[:, :, None] == blocks[:, None, :])
                             & (blocks[:, :, None] > 0))
    if visible is not None:
        allowed = allowed | visible.bool()[:, None, :]
    allowed = allowed & mask.bool()[:, None, :]
    bias = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def run_backbone(backbone, condition, tail=None, tail_mask=None,
                 tail_blocks=None, **kwargs):
    """``backbone`` over ``condition`` followed by ``tail`` (``[B, T, D]``
    generation-side embeddings at the positions after the prompt;
    ``tail_mask`` hides padding in it). The tail is causal, or, with
    ``tail_blocks`` (``[B, T]`` or ``[T]`` ints, as ``Condition.blocks``),
    bidirectional within blocks, which may continue one of the prompt's
    (MaskGIT's image codes with the prompt's final begin-of-image token).
    Returns the backbone's output."""
    embeds, mask = condition.embeds, condition.mask
    positions, blocks = condition.position_ids, condition.blocks
    visible = condition.visible
    if tail is not None:
        count = tail.shape[1]
        if tail_mask is None:
            tail_mask = mask.new_ones(len(mask), count)
        tail_mask = tail_mask.to(mask.dtype)
        embeds = torch.cat([embeds, tail.to(embeds.dtype)], dim=1)
        mask = torch.cat([mask, tail_mask], dim=1)
        positions = torch.cat([positions, positions[:, -1:] + (
            tail_mask.long().cumsum(-1) * tail_mask.long())], dim=1)
        if tail_blocks is not None:
            tail_blocks = torch.as_tensor(tail_blocks, device=mask.device)
            tail_blocks = tail_blocks.expand(len(mask), count)
        if blocks is not None or tail_blocks is not None:
            blocks = torch.cat([
                torch.zeros_like(condition.mask) if blocks is None
                else blocks,
                mask.new_zeros(len(mask), count) if tail_blocks is None
                else tail_blocks.to(mask.dtype)], dim=1)
        if visible is not None:
            visible = torch.cat([visible, visible.new_zeros(len(mask),
                                                            count)], dim=1)
    attention = mask if blocks is None and visible is None else \
        attention_bias(mask, blocks, embeds.dtype, visible)
    return backbone(inputs_embeds=embeds, attention_mask=attention,
                    position_ids=positions, **kwargs)


def token_condition(rows, embedding, pad_id, image_embeds=None, labels=None):
    """Token rows of a chat template, with ``None`` where the image
    embeddings go, -> a left-padded :class:`Condition`; with ``labels``
    (per row, -100 where unscored) also their ``[B, L]`` tensor, kept on the
    host, where the loss finds its scored positions without waiting for the
    device."""
    device = embedding.weight.device
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    image = torch.zeros(len(rows), length, dtype=torch.bool)
    target = torch.full_like(ids, -100)
    for i, row in enumerate(rows):
        start = length - len(row)
        image[i, start:] = torch.tensor([t is None for t in row])
        ids[i, start:] = torch.tensor([pad_id if t is None else t
                                       for t in row])
        mask[i, start:] = 1
        if labels is not None:
            target[i, start:] = torch.tensor(labels[i])
    embeds = embedding(ids.to(device))
    if image_embeds is not None:
        embeds = embeds.masked_scatter(image.to(device).unsqueeze(-1),
                                       image_embeds.to(embeds.dtype))
    condition = Condition(embeds, mask.to(device))
    return condition if labels is None else (condition, target)


def special_token_ids(tokenizer, tokens, vocab_size, family):
    """``{token: id}`` for a chat template's special tokens; raises naming
    the missing ones (by round trip, not against unk: Qwen2Tokenizer's unk
    token is <|endoftext|> itself) or a tokenizer larger than the
    model's vocabulary."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}
    missing = [t for t, v in ids.items()
               if v is None or tokenizer.convert_ids_to_tokens(v) != t]
    if missing:
        raise ValueError(f'the tokenizer lacks {family} tokens {missing}')
    if len(tokenizer) > vocab_size:
        raise ValueError(f'the tokenizer has {len(tokenizer)} tokens but the '
                         f'LLM only {vocab_size}')
    return ids


def answer_loss(backbone, head, condition, labels, chunk_size=None):
    """Image-to-text cross-entropy: the backbone over ``condition``, the
    state at t predicting token t + 1, only the positions ``labels`` score
    (:func:`~reca_toolkit.models.losses.head_cross_entropy`, ``chunk_size``
    positions' logits at a time)."""
    hidden = run_backbone(backbone, condition,
                          use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    rows, cols = (targets != -100).nonzero(as_tuple=True)
    scored = hidden[rows.to(hidden.device), cols.to(hidden.device)]
    loss, acc = head_cross_entropy(scored, head,
                                   targets[rows, cols].to(hidden.device),
                                   chunk_size)
    return dict(loss=loss, acc=acc)


@torch.no_grad()
def greedy_answers(backbone, head, tokenizer, condition, stop,
                   max_new_tokens=64):
    """Greedy decoding after ``condition`` (its last position predicts the
    first token) until every row has emitted ``stop``, or
    ``max_new_tokens``; the decoded texts. Each token reruns the whole
    sequence, the answer so far as :func:`run_backbone`'s causal tail: no
    KV cache, which BAGEL's MoT does not have, so one decoder serves every
    family and the prompt keeps its blocks and positions."""
    embedding = backbone.get_input_embeddings()
    device = condition.mask.device
    tokens = torch.empty(len(condition), 0, dtype=torch.long, device=device)
    done = torch.zeros(len(condition), dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        tail = embedding(tokens) if tokens.shape[1] else None
        hidden = run_backbone(backbone, condition, tail,
                              use_cache=False).last_hidden_state
        step = head(hidden[:, -1]).argmax(-1)
        step = torch.where(done, torch.full_like(step, stop), step)
        tokens = torch.cat([tokens, step[:, None]], dim=1)
        done |= step == stop
        if done.all():
            break
    texts = []
    for row in tokens.tolist():
        row = row[:row.index(stop)] if stop in row else row
        texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return texts


class BaseUMM(nn.Module):
    """What an adapter implements. Pixels are ``[B, 3, H, W]`` in [-1, 1].

    Subclasses list their parts in :meth:`parts` (name -> module, the names a
    user writes in ``frozen=``) and end their ``__init__`` with
    :meth:`setup_training`, which applies the machinery every family shares:
    freezing, the trainable dtype, LoRA, activation checkpointing and
    ``torch.compile`` of the repeated blocks.

    Class attributes the engine reads:
        naive_switches: constructor arguments that turn every speed switch
            off, for ``tools/benchmark.py --compare``.
        uncounted_switches: arguments that remove recomputation (activation
            checkpointing, chunked losses), which model FLOPs leave out.
        lora_part: the part LoRA adapters go into.
        crossed_frozen_parts: frozen parts that gradients still cross on
            their way to trainable ones (OpenUni's LLM lies between its
            trainable meta-queries and connector); activation checkpointing
            covers them as well, since their activations are kept too.
        draws_at_random: whether the generation objective draws at random
            (mask ratios, orders, timesteps, noise), so that
            :meth:`generation_loss` needs per-sample ``draws``; teacher-forced
            cross-entropy draws nothing.
    """
    naive_switches = dict(attn_implementation='eager', compile_layers=False,
                          ce_chunk_size=None)
    uncounted_switches = dict(gradient_checkpointing=False,
                              compile_layers=False, ce_chunk_size=None)
    lora_part = 'language_model'
    crossed_frozen_parts = ()
    draws_at_random = True

    def parts(self):
        """Name -> module for every part a user may freeze or train."""
        raise NotImplementedError

    @property
    def backbone(self):
        """The transformer whose input positions are a step's tokens (the
        benchmark's tokens/s and the FLOP formulas count them)."""
        return self.parts()[self.lora_part]

    def blocks(self):
        """The repeated blocks: FSDP wraps one unit per block and
        ``compile_layers`` compiles each. By default every transformers
        layer and timm ``Block`` of the model; :meth:`setup_training` marks
        them for the FSDP wrap policy (:func:`is_block`)."""
        from timm.models.vision_transformer import Block
        from transformers.modeling_layers import GradientCheckpointingLayer
        return [m for m in self.modules()
                if isinstance(m, (GradientCheckpointingLayer, Block))]

    def active_parameters(self):
        """Mixture-of-experts / -transformers models: token kind -> the
        parameters one token of that kind computes with (what "active
        parameters" reports). Empty for dense models, whose every token
        uses all of them."""
        return {}

    def no_decay_modules(self):
        """Modules none of whose parameters take weight decay, besides the
        norms, biases and embeddings the optimizer constructor always
        exempts (Harmon exempts its diffusion head)."""
        return []

    def sampling_settings(self):
        """What generation ran with, for evaluation cards: the generator's
        public scalar settings."""
        generator = getattr(self, 'generator', None)
        if generator is None:
            return {}
        scalars = (bool, int, float, str, type(None))
        settings = dict(generator=type(generator).__name__)
        for key, value in vars(generator).items():
            if not key.startswith('_') and key != 'training' and (
                    isinstance(value, scalars)
                    or isinstance(value, (list, tuple))
                    and all(isinstance(v, scalars) for v in value)):
                settings[key] = value
        return settings

    # the interface -----------------------------------------------------------
    def encode_understanding(self, und_pixels=None, und_features=None):
        """Pixels -> ``[B, N, D]`` dense prompt, in the backbone's input
        space, with the family's gradient policy; or the same from cached
        :meth:`understanding_features`."""
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
        """Chat-template understanding embeddings plus an instruction; a
        None instruction is the family's generic one."""
        raise NotImplementedError

    def text_condition(self, prompts):
        """Chat-template text prompts; a None prompt is the family's
        classifier-free "null" prompt."""
        raise NotImplementedError

    def null_condition(self, condition):
        """The classifier-free "unconditional" rows for ``condition``: by
        default the family's null text prompt, of its own length."""
        return self.text_condition([None] * len(condition))

    def generation_loss(self, condition, gen_pixels=None, gen_targets=None,
                        draws=None):
        """The model's native generation objective on ``gen_pixels`` or on
        cached :meth:`generation_targets`; dict of tensors.

        ``draws``: one integer seed per sample. Every random choice of the
        objective (mask ratio, order, timestep, noise) comes from it, so a
        sample's loss is the same at any world size and after a resume.
        """
        raise NotImplementedError

    def require_one(self, method, **inputs):
        """Raise unless exactly one of ``inputs`` (pixels, or their cached
        form) is given to ``method``."""
        if sum(v is not None for v in inputs.values()) != 1:
            raise ValueError(f'{type(self).__name__}.{method} needs exactly '
                             f'one of {" and ".join(inputs)}')

    def check_generation_inputs(self, gen_pixels, gen_targets, draws):
        """What every :meth:`generation_loss` checks first."""
        self.require_one('generation_loss', gen_pixels=gen_pixels,
                         gen_targets=gen_targets)
        if draws is None and self.draws_at_random:
            raise ValueError(f'{type(self).__name__} draws its objective\'s '
                             'random choices from per-sample seeds: pass '
                             'draws=')

    # image-to-text ------------------------------------------------------------
    # A family has image-to-text through two hooks: its chat template's rows
    # (conversation_tokens) and answer_condition, which embeds them; the
    # loss and the decoding below are the same for every family.
    def conversation_tokens(self, turns, num_image_tokens):
        """``turns`` (``(user, assistant)`` pairs about one image) in the
        family's image-to-text template -> its token row, with places for
        ``num_image_tokens`` image embeddings, and a label per position
        (-100 where unscored; the answers are scored)."""
        raise NotImplementedError(
            f'{type(self).__name__} has no image-to-text: no '
            'conversation_tokens (its chat template with the image) to train '
            'or decode')

    def answer_condition(self, rows, image_embeds, labels=None):
        """Rows of :meth:`conversation_tokens` (or :meth:`question_rows`)
        with ``image_embeds`` in their places -> a left-padded
        :class:`Condition`; with ``labels`` also their ``[B, L]`` tensor,
        aligned with the rows' ends."""
        raise NotImplementedError

    def answer_image_embeds(self, und_pixels):
        """The image embeddings image-to-text reads: by default the
        understanding embeddings RecA conditions generation on."""
        return self.encode_understanding(und_pixels)

    def understanding_loss(self, und_pixels, conversations):
        """Image-to-text cross-entropy.

        ``conversations[i]`` is a list of ``(user, assistant)`` turns about
        image ``i``; the image belongs to the first user turn.
        """
        image_embeds = self.answer_image_embeds(und_pixels)
        rows, labels = zip(*(self.conversation_tokens(turns,
                                                      image_embeds.shape[1])
                             for turns in conversations))
        condition, labels = self.answer_condition(rows, image_embeds, labels)
        return answer_loss(self.backbone, self.lm_head, condition, labels,
                           self.ce_chunk_size)

    def question_condition(self, und_pixels, questions):
        """Images and one question each -> the image-to-text prompt in the
        format :meth:`understanding_loss` trains on, up to where the answer
        begins (its last position predicts the answer's first token), and
        the id of the token that ends an answer: what :meth:`describe`
        decodes from."""
        image_embeds = self.answer_image_embeds(und_pixels)
        rows, stop = self.question_rows(questions, image_embeds.shape[1])
        return self.answer_condition(rows, image_embeds), stop

    def question_rows(self, questions, num_image_tokens):
        """``conversation_tokens`` of each question with an empty answer,
        cut where the answer's labels begin; and the token that ends an
        answer (its last label). For :meth:`question_condition`."""
        rows = []
        for question in questions:
            row, labels = self.conversation_tokens([(question, '')],
                                                   num_image_tokens)
            start = next(i for i, label in enumerate(labels) if label != -100)
            rows.append(row[:start])
        return rows, labels[-1]

    @torch.no_grad()
    def describe(self, und_pixels, questions, max_new_tokens=64):
        """Greedy image-to-text: one answer per image to its question, the
        decoded text up to the family's end-of-answer token. Validation on
        understanding runs it (``RecAModel.predict`` on rows with
        ``conversations``)."""
        condition, stop = self.question_condition(und_pixels,
                                                  list(questions))
        return greedy_answers(self.backbone, self.lm_head, self.tokenizer,
                              condition, stop, max_new_tokens)

    def generate(self, condition, generator=None, **sampling):
        """Sample images for ``condition``; returns pixels in [-1, 1]."""
        raise NotImplementedError

    def save_pretrained(self, out_dir):
        """Write the model in its native layout; the folder appears complete
        or not at all."""
        raise NotImplementedError

    def edit(self, und_pixels, instructions, generator=None,
             source_pixels=None, **sampling):
        """Images plus edit instructions -> edited images in [-1, 1]. By
        default RecA's image-conditioned prompt: the understanding
        embeddings and the instruction condition generation;
        ``source_pixels`` (the image at the generation size) is for families
        whose editing puts more of the source in the context (BAGEL: its
        clean VAE latents) and guides by several branches."""
        condition = self.image_condition(
            self.encode_understanding(und_pixels), list(instructions))
        return self.generate(condition, generator=generator, **sampling)

    def reconstruct(self, und_pixels, instruction, generator=None,
                    **sampling):
        """Image -> understanding embeddings -> generated image."""
        embeds = self.encode_understanding(und_pixels)
        condition = self.image_condition(embeds,
                                         [instruction] * len(und_pixels))
        return self.generate(condition, generator=generator, **sampling)

    # shared training machinery -------------------------------------------------
    def setup_training(self, frozen, trainable_dtype='float32', lora=None,
                       gradient_checkpointing=False, compile_layers=False,
                       ce_chunk_size=None):
        """Freeze ``frozen``; cast trainable parts to ``trainable_dtype``
        (float32 keeps AdamW's small updates from vanishing in bfloat16
        weights, while autocast still computes in bfloat16); put LoRA
        adapters (a ``peft.LoraConfig`` dict) into :attr:`lora_part`, whose
        own weights then stay frozen; checkpoint and compile the blocks.

        ``compile_layers``: True or ``torch.compile`` arguments. Each block
        is compiled once and its code reused by its twins; compiling the
        whole step would trace tokenization and Python control flow.
        ``ce_chunk_size``: image-to-text cross-entropy (and a family's own
        cross-entropies that take it) computes this many positions' logits
        at a time, never a whole vocabulary's for every position; None
        computes them all at once.
        """
        self.ce_chunk_size = ce_chunk_size
        if lora is not None and self.lora_part in frozen:
            raise ValueError(f'lora= trains adapters on the {self.lora_part}'
                             f"; remove '{self.lora_part}' from frozen=")
        trainable_dtype = getattr(torch, trainable_dtype)
        self.lora = lora
        if lora is not None:
            add_lora(self.parts()[self.lora_part], lora, trainable_dtype)
        for name, module in self.parts().items():
            if name not in frozen and not (lora and name == self.lora_part):
                module.to(trainable_dtype)
        self.apply_freeze(frozen)
        for block in self.blocks():
            block.is_umm_block = True
        if gradient_checkpointing:
            self.enable_checkpointing()
        if compile_layers:
            options = {} if compile_layers is True else dict(compile_layers)
            for block in self.blocks():
                block.compile(**options)

    def enable_checkpointing(self):
        """Activation checkpointing of every trainable part, and every
        crossed frozen part, that supports it: transformers and diffusers
        models through their own switches, other modules (MAR) through
        their ``grad_checkpointing`` attribute."""
        from diffusers import ModelMixin
        from transformers import PreTrainedModel
        for name, module in self.parts().items():
            if self.is_frozen(name) and name not in self.crossed_frozen_parts:
                continue
            if isinstance(module, PreTrainedModel):
                if module.supports_gradient_checkpointing:
                    module.activation_checkpointing_enable(
                        activation_checkpointing_kwargs=dict(
                            use_reentrant=False))
            elif isinstance(module, ModelMixin):
                if module._supports_gradient_checkpointing:
                    module.enable_gradient_checkpointing()
            elif hasattr(module, 'grad_checkpointing'):
                module.grad_checkpointing = True

    def apply_freeze(self, frozen):
        parts = self.parts()
        unknown = sorted(set(frozen) - set(parts))
        if unknown:
            raise ValueError(f'frozen={list(frozen)} names unknown parts '
                             f'{unknown}; valid parts: {sorted(parts)}')
        self.frozen = tuple(frozen)
        for name in frozen:
            parts[name].requires_grad_(False)
        self._set_frozen_modes(self.training)
        print_log('\n' + self.parameter_table(), logger='current')

    def is_frozen(self, name):
        return name in self.frozen

    def train(self, mode=True):
        super().train(mode)
        if hasattr(self, 'frozen'):
            self._set_frozen_modes(mode)
        return self

    def _set_frozen_modes(self, mode):
        """Frozen parts run in eval mode (no dropout). transformers layers
        checkpoint only in training mode, so in a crossed frozen part the
        layers alone -- not their attention or MLP modules -- follow
        ``mode``."""
        from transformers.modeling_layers import GradientCheckpointingLayer
        for name in self.frozen:
            part = self.parts()[name]
            part.eval()
            if name in self.crossed_frozen_parts:
                for layer in part.modules():
                    if isinstance(layer, GradientCheckpointingLayer):
                        layer.training = mode

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


def is_block(module):
    """Whether ``module`` is one of a UMM's declared blocks."""
    return getattr(module, 'is_umm_block', False)


def scale_gradient(tensor, scale):
    """``tensor`` in the forward; its gradient times ``scale`` in the
    backward. Harmon trains its understanding path at a tenth of the
    gradient of the generation path this way, rather than detaching it."""
    if scale == 1:
        return tensor
    return _ScaleGradient.apply(tensor, scale)


class _ScaleGradient(torch.autograd.Function):

    @staticmethod
    def forward(ctx, tensor, scale):
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


__all__ = ['BaseUMM', 'Condition', 'answer_loss', 'attention_bias',
           'is_block', 'position_ids', 'special_token_ids',
           'token_condition',
           'run_backbone', 'scale_gradient']
