"""Show-o (Xie et al. 2024, showlab/Show-o) as a UMM: one Phi-1.5
transformer that reads text causally and writes MAGVIT-v2 image codes by
discrete diffusion (MaskGIT), with RecA's two Show-o variants.

The pieces, all shared components or library classes:

* the transformer: transformers ``PhiForCausalLM`` with the vocabulary
  extended to text + 10 Show-o tokens + the image codebook + one mask
  token (58498 for Phi-1.5 and an 8192-code MAGVIT-v2);
* generation: :class:`~reca_toolkit.models.generators.MaskGITGenerator`
  over the MAGVIT-v2 (LFQ) codes, predicted by the same output layer as
  text (showlab/Show-o: models/modeling_showo.py);
* understanding, ``understanding='clip'`` (RecA's main Show-o result,
  HorizonWind2004/reconstruction-alignment ``Show-o/training/
  train_recon_w_clip_vit.py``): transformers ``CLIPVisionModel``
  (ViT-L/14-336), penultimate layer, patch tokens, then the
  ``mm_projector`` MLP: 576 embeddings;
* understanding, ``understanding='vq'`` (the appendix variant,
  ``Show-o/training/train_recon.py``): the MAGVIT-v2 codes of the image
  downscaled ``vq_downscale`` times (or downscaled and resized back,
  "blur8"), as token embeddings.

Sequences (``Show-o/training/prompting_utils.py``; pads keep their
positions, as upstream, so the distance between text and image is fixed):

* text-to-image: ``[PAD..]<|t2i|><bos>{prompt}<eos>`` (``max_text_length
  + 1`` tokens) ``<|soi|>[codes]<|eoi|>``; the image block, ``<|soi|>``
  to ``<|eoi|>``, attends in both directions (``Condition.blocks``);
* CLIP reconstruction: ``<|mmu|><|soi|>[576 CLIP]<|eoi|><bos>USER: \\n
  {instruction} ASSISTANT:<eos>[PAD..]`` (``max_text_length`` tokens
  besides the CLIP ones) ``<|soi|>[codes]<|eoi|>``: causal, every position
  sees the CLIP block (``Condition.visible``), the codes alone are
  bidirectional (``create_attention_mask_for_mmu_vit_recon``);
* VQ reconstruction: ``[PAD..]<|mmu|><|soi|>[condition codes]<|eoi|>
  <bos>USER: \\n {instruction} ASSISTANT:<eos><|soi|>[codes]<|eoi|>``, each
  image block bidirectional (``create_attention_mask_predict_next_recon``);
* image-to-text: CLIP: ``<|mmu|>{system prompt}<|soi|>[576]<|eoi|>USER:
  {q} ASSISTANT: {a}<|endoftext|>...``, the CLIP block seen by all
  (``create_attention_mask_for_mmu_vit``); VQ: ``<|mmu|><|soi|>[codes]
  <|eoi|>USER: ...``, everything up to ``<|eoi|>`` seen by all
  (``create_attention_mask_for_mmu``).

Attention masks are float additive 4-D masks (``attention_bias``): eager
attention silently ignores boolean ones.

Gradient quirk (``recon_grad``): upstream builds the CLIP reconstruction
inputs -- the ``mm_projector`` output and every token embedding of the
sequence -- inside a ``@torch.no_grad()`` function, so the reconstruction
loss trains the transformer blocks and the output layer only; the
projector and the embedding table learn from image-to-text alone.
``recon_grad='parity'`` (default) reproduces that; ``'full'`` lets the
reconstruction gradient reach them. The VQ variant feeds token ids, whose
embedding upstream runs with gradient, so ``'parity'`` changes nothing
there.
"""
import contextlib
import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reca_toolkit.models.builder import build_component
from reca_toolkit.models.lora import merged_state_dict
from reca_toolkit.models.showo_weights import (check_showo_folder,
                                               load_showo_state,
                                               write_showo_folder)
from reca_toolkit.models.tokenizers import demo_tokenizer
from reca_toolkit.models.umm.base import BaseUMM, Condition, run_backbone
from reca_toolkit.models.weightless import parameters_on_meta
from reca_toolkit.registry import ENCODERS, GENERATORS, TOKENIZERS, UMMS

# Show-o's 10 new tokens, in the order UniversalPrompting adds them (the
# pad token first), so their ids follow the text vocabulary the same way.
PAD_TOKEN = '[PAD]'
SHOWO_TOKENS = ('<|soi|>', '<|eoi|>', '<|sov|>', '<|eov|>', '<|t2i|>',
                '<|mmu|>', '<|t2v|>', '<|v2v|>', '<|lvg|>')
ENDOFTEXT = '<|endoftext|>'
# Show-o's LLaVA system prompt (Show-o/llava/llava_instruct_data.py).
SYSTEM_PROMPT = ('A chat between a curious user and an artificial '
                 'intelligence assistant. The assistant gives helpful, '
                 "detailed, and polite answers to the user's questions.")
# CLIP's image normalisation, which the image-to-text path applies (through
# CLIPImageProcessor upstream) and the reconstruction path does not.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
UNDERSTANDINGS = ('clip', 'vq')
RECON_GRADS = ('parity', 'full')


@TOKENIZERS.register_module(name='ShowoDemoTokenizer')
def showo_demo_tokenizer(vocab_size=512, pad_to=None):
    """A byte-level BPE with Phi's ``<|endoftext|>`` (id 0) and Show-o's
    tokens (ids 1..10), trained in code on Show-o's templates, for tiny
    models. ``pad_to``: add unused placeholder tokens up to this length, so
    the image codes start where the published model's do (the sizing tools
    build Show-o-512 without its folder: 50305)."""
    tokenizer = demo_tokenizer(
        (ENDOFTEXT, PAD_TOKEN) + SHOWO_TOKENS,
        ['USER: \n ', ' ASSISTANT:', SYSTEM_PROMPT], vocab_size,
        bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, pad_token=PAD_TOKEN)
    if pad_to is not None:
        tokenizer.add_tokens([f'<|unused_{i}|>'
                              for i in range(pad_to - len(tokenizer))])
    return tokenizer


@UMMS.register_module()
class ShowoUMM(BaseUMM):
    """Show-o behind the UMM interface.

    Args:
        pretrained: a local folder in the layout of
            :mod:`~reca_toolkit.models.showo_weights` (Show-o, Phi-1.5
            tokenizer, MAGVIT-v2 and, for ``understanding='clip'``, CLIP).
        config: ``PhiConfig`` arguments for a randomly initialised model
            instead (tests, demos); ``vision_config`` then gives the
            ``CLIPVisionConfig``.
        understanding: ``'clip'`` or ``'vq'`` (see the module docstring).
        gen_tokenizer: the MAGVIT-v2 tokenizer config (``ENCODERS``);
            with ``pretrained``, its type only (the folder has the rest).
        tokenizer: a ``TOKENIZERS`` config; by default the folder's.
        frozen: parts kept frozen (:meth:`parts`); RecA freezes CLIP and
            MAGVIT-v2.
        generator: the :class:`MaskGITGenerator` config (sampling settings).
        image_size: the generated image size (512: 1024 codes).
        max_text_length: tokens of the text block (Show-o's
            ``max_seq_length``, 128).
        recon_grad: ``'parity'`` or ``'full'`` (see the module docstring).
        vq_downscale, vq_resize_back: the VQ variant's condition: codes of
            the understanding view downscaled ``vq_downscale`` times
            (RecA: 2), or downscaled and resized back to its size
            (RecA's "blur8": 8 and True).
        system_prompt: the image-to-text system prompt (CLIP variant).
        prompt_template: how a text-to-image prompt is phrased.
        weights_dtype, trainable_dtype, attn_implementation,
        gradient_checkpointing, compile_layers, lora, ce_chunk_size: as for
            every UMM (:meth:`BaseUMM.setup_training`); ``ce_chunk_size``
            chunks image-to-text's logits, not MaskGIT's.
        max_length: image-to-text conversations are cut to this many text
            tokens.
    """
    lora_part = 'llm'

    def __init__(self,
                 pretrained=None,
                 config=None,
                 vision_config=None,
                 understanding='clip',
                 gen_tokenizer=dict(type='MAGVITv2Tokenizer'),
                 tokenizer=None,
                 frozen=None,
                 generator=dict(type='MaskGITGenerator'),
                 image_size=512,
                 max_text_length=128,
                 recon_grad='parity',
                 vq_downscale=2,
                 vq_resize_back=False,
                 system_prompt=SYSTEM_PROMPT,
                 prompt_template='{}',
                 weights_dtype='bfloat16',
                 trainable_dtype='float32',
                 attn_implementation='sdpa',
                 gradient_checkpointing=False,
                 compile_layers=False,
                 lora=None,
                 ce_chunk_size=None,
                 max_length=1024):
        super().__init__()
        if (pretrained is None) == (config is None):
            raise ValueError('ShowoUMM needs exactly one of pretrained= (a '
                             'local folder) or config= (random '
                             'initialisation)')
        if understanding not in UNDERSTANDINGS:
            raise ValueError(f"understanding='{understanding}' is not one "
                             f'of {UNDERSTANDINGS}')
        if recon_grad not in RECON_GRADS:
            raise ValueError(f"recon_grad='{recon_grad}' is not one of "
                             f'{RECON_GRADS}')
        from transformers import (CLIPVisionConfig, CLIPVisionModel,
                                  PhiConfig, PhiForCausalLM)
        self.pretrained, self.understanding = pretrained, understanding
        self.weights_dtype = getattr(torch, weights_dtype)
        self.image_size, self.max_text_length = image_size, max_text_length
        self.recon_grad = recon_grad
        self.vq_downscale, self.vq_resize_back = vq_downscale, vq_resize_back
        self.system_prompt, self.prompt_template = system_prompt, \
            prompt_template
        self.max_length = max_length
        clip = understanding == 'clip'
        if pretrained is not None:
            folder = check_showo_folder(pretrained, clip)
            llm_config = PhiConfig.from_pretrained(folder['llm'],
                                                   local_files_only=True)
            llm_config.vocab_size = folder['showo_config']['vocab_size']
            vision_config = CLIPVisionConfig.from_pretrained(
                folder['clip'], local_files_only=True) if clip else None
            tokenizer = tokenizer or dict(type='HFTokenizer',
                                          path=folder['llm'])
        else:
            llm_config = PhiConfig(**config)
            if clip:
                vision_config = CLIPVisionConfig(**vision_config)
        llm_config._attn_implementation = attn_implementation
        with parameters_on_meta() if pretrained else \
                contextlib.nullcontext():
            phi = PhiForCausalLM(llm_config)
            if clip:
                # Show-o's projector: CLIP width -> LLM width, GELU, LLM width.
                width = llm_config.hidden_size
                self.mm_projector = nn.Sequential(
                    nn.Linear(vision_config.hidden_size, width), nn.GELU(),
                    nn.Linear(width, width))
        if clip and pretrained is not None:
            self.vision = CLIPVisionModel.from_pretrained(
                folder['clip'], local_files_only=True,
                dtype=self.weights_dtype,
                attn_implementation=attn_implementation)
        elif clip:
            vision_config._attn_implementation = attn_implementation
            self.vision = CLIPVisionModel(vision_config)
        if pretrained is not None:
            self.gen_tokenizer = ENCODERS.get(
                gen_tokenizer['type']).from_pretrained(
                    folder['magvit'], dtype=self.weights_dtype)
        else:
            self.gen_tokenizer = build_component(ENCODERS, gen_tokenizer)
        self.tokenizer = TOKENIZERS.build(tokenizer)
        self.generator = build_component(
            GENERATORS, dict(generator,
                             num_codes=self.gen_tokenizer.num_codes))
        # The Hugging Face model is kept for export but not registered: its
        # modules are, once, as ``llm`` and ``lm_head``.
        self.__dict__['hf_llm'] = phi
        self.llm, self.lm_head = phi.model, phi.lm_head
        if pretrained is not None:
            self._load(load_showo_state(folder['showo']), folder)
        self.ids = self._special_ids()
        self.to(self.weights_dtype)
        if frozen is None:
            frozen = ('vision', 'magvit') if clip else ('magvit', )
        self.setup_training(frozen, trainable_dtype, lora,
                            gradient_checkpointing, compile_layers,
                            ce_chunk_size)

    # weights -----------------------------------------------------------------
    def _load(self, state, folder):
        """Show-o's ``showo.*`` (Phi) and ``mm_projector.*`` keys, every
        one of them."""
        modules = dict(showo=self.hf_llm)
        if self.understanding == 'clip':
            modules['mm_projector'] = self.mm_projector
        other = sorted(k for k in state
                       if k.split('.', 1)[0] not in modules)
        if other:
            raise ValueError(
                f"Show-o weights in '{folder['showo']}' hold keys outside "
                f'{sorted(modules)}: {other[:8]}')
        for prefix, module in modules.items():
            part = {k[len(prefix) + 1:]: v for k, v in state.items()
                    if k.startswith(prefix + '.')}
            missing, unexpected = module.load_state_dict(part, strict=False,
                                                         assign=True)
            if missing or unexpected:
                raise ValueError(
                    f"Show-o weights in '{folder['showo']}' do not fit "
                    f'{prefix}: missing {missing[:8]}, unexpected '
                    f'{unexpected[:8]}')

    @staticmethod
    def validate_config(cfg):
        """Fail before anything is written if the weights folder is bad."""
        if cfg.get('pretrained') is not None:
            check_showo_folder(cfg['pretrained'],
                               cfg.get('understanding', 'clip') == 'clip')

    def save_pretrained(self, out_dir):
        """Write the weights folder back (:mod:`~reca_toolkit.models.
        showo_weights`); it appears complete or not at all."""
        state = {}
        llm = merged_state_dict(self.hf_llm) if self.lora else \
            self.hf_llm.state_dict()
        state.update({f'showo.{k}': v for k, v in llm.items()})
        if self.understanding == 'clip':
            state.update({f'mm_projector.{k}': v for k, v in
                          self.mm_projector.state_dict().items()})
        state = {k: v.to(self.weights_dtype) if v.is_floating_point() else v
                 for k, v in state.items()}
        self.hf_llm.config.dtype = self.weights_dtype
        showo_config = dict(
            _class_name='Showo', w_clip_vit=self.understanding == 'clip',
            vocab_size=self.hf_llm.config.vocab_size,
            llm_vocab_size=self.code_offset - 1 - len(SHOWO_TOKENS),
            codebook_size=self.gen_tokenizer.num_codes,
            num_vq_tokens=self.num_image_tokens)
        return write_showo_folder(
            out_dir, state, showo_config, self.hf_llm.config, self.tokenizer,
            self.vision if self.understanding == 'clip' else None,
            self.gen_tokenizer)

    # what the engine reads ---------------------------------------------------
    def parts(self):
        parts = dict(llm=self.llm, lm_head=self.lm_head)
        if self.understanding == 'clip':
            parts.update(mm_projector=self.mm_projector, vision=self.vision)
        parts['magvit'] = self.gen_tokenizer
        return parts

    @property
    def num_image_tokens(self):
        return (self.image_size // self.gen_tokenizer.downsample) ** 2

    def sampling_settings(self):
        return dict(super().sampling_settings(), image_size=self.image_size,
                    image_tokens=self.num_image_tokens,
                    prompt_template=self.prompt_template)

    def _special_ids(self):
        """Show-o's tokens, added as UniversalPrompting adds them (a no-op
        for a tokenizer that has them); the codes follow at
        ``len(tokenizer)`` and the mask token is the last id."""
        tokenizer = self.tokenizer
        tokenizer.add_special_tokens(dict(pad_token=PAD_TOKEN))
        tokenizer.add_tokens(list(SHOWO_TOKENS))
        ids = {t: tokenizer.convert_tokens_to_ids(t)
               for t in (PAD_TOKEN, ) + SHOWO_TOKENS}
        ids['bos'], ids['eos'] = tokenizer.bos_token_id, \
            tokenizer.eos_token_id
        if ids['bos'] is None or ids['eos'] is None:
            raise ValueError('the Show-o tokenizer needs bos and eos tokens '
                             "(Phi's <|endoftext|>)")
        self.code_offset = len(tokenizer)
        vocab = self.hf_llm.config.vocab_size
        needed = self.code_offset + self.gen_tokenizer.num_codes + 1
        if vocab != needed:
            raise ValueError(
                f'Show-o lays out its vocabulary as {len(tokenizer)} text '
                f'tokens + {self.gen_tokenizer.num_codes} image codes + 1 '
                f'mask token = {needed}, but the LLM has vocab_size={vocab}')
        ids['mask'] = vocab - 1
        return ids

    # sequences ---------------------------------------------------------------
    def _text(self, text):
        return self.tokenizer(text, add_special_tokens=False)['input_ids']

    def _sentence(self, text, room):
        """``<bos>{text}<eos>`` in at most ``room`` tokens (upstream keeps
        the end-of-text token when it truncates)."""
        ids = [self.ids['bos']] + self._text(text)
        return ids[:room - 1] + [self.ids['eos']]

    def _condition(self, rows, image_embeds=None):
        """Rows of ``(id or None, block, visible)`` -> a Condition; None
        marks image embedding slots, ``[PAD]`` ids are masked and keep their
        positions, rows are left-padded to one length."""
        embedding = self.llm.get_input_embeddings()
        device = embedding.weight.device
        length = max(len(r) for r in rows)
        pad = self.ids[PAD_TOKEN]
        rows = [[(pad, 0, 0)] * (length - len(r)) + list(r) for r in rows]
        slots = torch.tensor([[t is None for t, _, _ in r] for r in rows])
        ids = torch.tensor([[pad if t is None else t for t, _, _ in r]
                            for r in rows])
        blocks = torch.tensor([[b for _, b, _ in r] for r in rows])
        visible = torch.tensor([[v for _, _, v in r] for r in rows])
        mask = (ids != pad) | slots
        embeds = embedding(ids.to(device))
        if image_embeds is not None:
            embeds = embeds.masked_scatter(slots.to(device).unsqueeze(-1),
                                           image_embeds.to(embeds.dtype))
        positions = torch.arange(length).expand(len(rows), -1)
        return Condition(embeds, mask.long().to(device),
                         positions.to(device),
                         blocks.to(device) if blocks.any() else None,
                         visible.to(device) if visible.any() else None)

    @staticmethod
    def _plain(ids, block=0, visible=0):
        return [(t, block, visible) for t in ids]

    def text_condition(self, prompts):
        """``[PAD..]<|t2i|><bos>{prompt}<eos><|soi|>``; the null (None)
        prompt is the empty one, Show-o's classifier-free prompt."""
        rows = []
        for text in prompts:
            text = '' if text is None else self.prompt_template.format(text)
            head = [self.ids['<|t2i|>']] + self._sentence(
                text, self.max_text_length)
            pads = [self.ids[PAD_TOKEN]] * (self.max_text_length + 1 -
                                            len(head))
            rows.append(self._plain(pads + head) +
                        [(self.ids['<|soi|>'], 1, 0)])
        return self._condition(rows)

    def _instruction(self, text):
        return f'USER: \n {"" if text is None else text} ASSISTANT:'

    def image_condition(self, und_embeds, instructions):
        """The variant's reconstruction prompt around ``und_embeds``; a None
        instruction is the empty one (Show-o's RecA drops nothing)."""
        with self._recon_inputs():
            return self._image_condition(und_embeds, instructions)

    def _image_condition(self, und_embeds, instructions):
        ids, count = self.ids, und_embeds.shape[1]
        rows = []
        for text in instructions:
            if self.understanding == 'clip':
                sentence = self._sentence(self._instruction(text),
                                          self.max_text_length - 3)
                head = [ids['<|mmu|>'], ids['<|soi|>']]
                tail = [ids['<|eoi|>']] + sentence
                pads = [ids[PAD_TOKEN]] * (self.max_text_length - 2 -
                                           len(tail))
                rows.append(self._plain(head) + [(None, 0, 1)] * count +
                            self._plain(tail + pads) +
                            [(ids['<|soi|>'], 0, 0)])
            else:
                sentence = self._sentence(self._instruction(text),
                                          self.max_text_length)
                pads = [ids[PAD_TOKEN]] * (self.max_text_length -
                                           len(sentence))
                rows.append(
                    self._plain(pads + [ids['<|mmu|>']]) +
                    [(ids['<|soi|>'], 1, 0)] + [(None, 1, 0)] * count +
                    [(ids['<|eoi|>'], 1, 0)] + self._plain(sentence) +
                    [(ids['<|soi|>'], 2, 0)])
        return self._condition(rows, und_embeds)

    def _recon_inputs(self):
        """Upstream builds the CLIP reconstruction inputs without autograd
        (``recon_grad='parity'``)."""
        parity = self.recon_grad == 'parity' and \
            self.understanding == 'clip'
        return torch.no_grad() if parity else contextlib.nullcontext()

    # understanding -----------------------------------------------------------
    def _clip_features(self, pixels, normalize):
        size = self.vision.config.image_size
        pixels = F.interpolate(pixels.float(), size=(size, size),
                               mode='bilinear', align_corners=False)
        if normalize:
            mean = pixels.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
            std = pixels.new_tensor(CLIP_STD).view(1, 3, 1, 1)
            pixels = ((pixels + 1) / 2 - mean) / std
        dtype = next(self.vision.parameters()).dtype
        trains = not self.is_frozen('vision')
        with torch.set_grad_enabled(trains and torch.is_grad_enabled()):
            hidden = self.vision(pixel_values=pixels.to(dtype),
                                 output_hidden_states=True).hidden_states
        # LLaVA's CLIPVisionTower: the penultimate layer, patch tokens only.
        return hidden[-2][:, 1:]

    def _vq_condition_codes(self, pixels):
        size = pixels.shape[-1]
        small = F.interpolate(pixels.float(), size=(
            size // self.vq_downscale, ) * 2, mode='bilinear',
            align_corners=False)
        if self.vq_resize_back:
            small = F.interpolate(small, size=(size, size), mode='bilinear',
                                  align_corners=False)
        return self.gen_tokenizer.encode(small)

    def _code_embeds(self, codes):
        return self.llm.get_input_embeddings()(codes + self.code_offset)

    def understanding_features(self, und_pixels):
        if self.understanding == 'clip':
            if not self.is_frozen('vision'):
                raise ValueError("CLIP features can only be cached while "
                                 "'vision' is frozen")
            with torch.no_grad():
                return self._clip_features(und_pixels, normalize=False)
        return self._vq_condition_codes(und_pixels)

    def generation_targets(self, gen_pixels):
        return self.gen_tokenizer.encode(gen_pixels)

    def encode_understanding(self, und_pixels=None, und_features=None):
        """CLIP: the projected penultimate patch features of the
        understanding view, bilinearly resized to CLIP's size from [-1, 1]
        without CLIP's normalisation, as upstream's reconstruction path;
        VQ: the token embeddings of the downscaled view's codes."""
        self.require_one('encode_understanding', und_pixels=und_pixels,
                         und_features=und_features)
        with self._recon_inputs():
            if self.understanding == 'vq':
                codes = und_features.long() if und_features is not None \
                    else self._vq_condition_codes(und_pixels)
                return self._code_embeds(codes)
            features = und_features if und_features is not None else \
                self._clip_features(und_pixels, normalize=False)
            return self._project(features)

    def _project(self, features):
        dtype = next(self.mm_projector.parameters()).dtype
        return self.mm_projector(features.to(dtype))

    def conversation_tokens(self, turns, num_image_tokens):
        """Show-o's LLaVA format (``phi1.5`` template): ``USER: {q}
        ASSISTANT: {a}<|endoftext|>`` per turn after the image; labels
        mark the answers and their ``<|endoftext|>``. Returns rows of
        ``(id or None, block, visible)`` and labels."""
        ids = self.ids
        if self.understanding == 'clip':
            head = self._plain([ids['<|mmu|>']] +
                               self._text(self.system_prompt) +
                               [ids['<|soi|>']]) + \
                [(None, 0, 1)] * num_image_tokens + \
                self._plain([ids['<|eoi|>']])
        else:
            head = [(t, 0, 1) for t in [ids['<|mmu|>'], ids['<|soi|>']]] + \
                [(None, 0, 1)] * num_image_tokens + [(ids['<|eoi|>'], 0, 1)]
        row, labels, text = head, [-100] * len(head), 0
        for i, (question, answer) in enumerate(turns):
            prompt = self._text(f'USER: {question} ASSISTANT:')
            reply = self._text(f' {answer}') + [ids['eos']]
            row = row + self._plain(prompt + reply)
            labels = labels + [-100] * len(prompt) + reply
            text += len(prompt) + len(reply)
            if text >= self.max_length:
                cut = len(row) - (text - self.max_length)
                row, labels = row[:cut], labels[:cut]
                break
        return row, labels

    def answer_image_embeds(self, und_pixels):
        """Image-to-text's image embeddings: CLIP features with CLIP's
        normalisation, or the VQ codes' embeddings."""
        if self.understanding == 'clip':
            return self._project(self._clip_features(und_pixels,
                                                     normalize=True))
        return self._code_embeds(self.gen_tokenizer.encode(und_pixels))

    def answer_condition(self, rows, image_embeds, labels=None):
        condition = self._condition(rows, image_embeds)
        # Left padding: real tokens at 0, 1, ... as upstream's right
        # padding has them.
        condition.positions = None
        if labels is None:
            return condition
        length = condition.mask.shape[1]
        target = torch.full((len(rows), length), -100, dtype=torch.long)
        for i, row_labels in enumerate(labels):
            target[i, length - len(row_labels):] = torch.tensor(row_labels)
        return condition, target

    # generation --------------------------------------------------------------
    def _predict(self, condition, frozen_inputs=False):
        """``predict(codes, mask)`` for the generator: the codes (the mask
        token where masked) and ``<|eoi|>`` after ``condition``, the codes
        in one bidirectional block with the prompt's final ``<|soi|>`` when
        that is in a block (text-to-image, VQ reconstruction), on their own
        otherwise (CLIP reconstruction)."""
        last = condition.blocks[:, -1] if condition.blocks is not None \
            else condition.mask.new_zeros(len(condition))
        fresh = (0 if condition.blocks is None
                 else int(condition.blocks.max())) + 1
        code_block = torch.where(last > 0, last, fresh)
        device = condition.embeds.device
        eoi = torch.tensor([self.ids['<|eoi|>']], device=device)

        def predict(codes, mask):
            codes, mask = codes.to(device), mask.to(device)
            count = codes.shape[1]
            ids = torch.where(mask, self.ids['mask'],
                              codes + self.code_offset)
            ids = torch.cat([ids, eoi.expand(len(ids), 1)], dim=1)
            with torch.no_grad() if frozen_inputs else \
                    contextlib.nullcontext():
                tail = self.llm.get_input_embeddings()(ids)
            blocks = torch.cat([code_block[:, None].expand(-1, count),
                                last[:, None]], dim=1)
            hidden = run_backbone(self.llm, condition, tail,
                                  tail_blocks=blocks,
                                  use_cache=False).last_hidden_state
            return self.lm_head(hidden[:, -count - 1:-1])

        return predict

    def generation_loss(self, condition, gen_pixels=None, gen_targets=None,
                        draws=None):
        self.check_generation_inputs(gen_pixels, gen_targets, draws)
        codes = self.gen_tokenizer.encode(gen_pixels) if gen_targets is None \
            else gen_targets.long()
        if codes.shape[1] != self.num_image_tokens:
            raise ValueError(
                f'the generation view gives {codes.shape[1]} MAGVIT-v2 codes '
                f'but the model generates {self.num_image_tokens} '
                f'({self.image_size} px); set the generation view to '
                f'{self.image_size} px')
        # In parity mode a prompt built without autograd (the CLIP
        # reconstruction prompt) gets code embeddings built the same way.
        frozen_inputs = self.recon_grad == 'parity' and \
            not condition.embeds.requires_grad
        out = self.generator.loss(codes, self._predict(condition,
                                                       frozen_inputs),
                                  self.generator.draw(draws, codes.shape[1],
                                                      codes.device),
                                  class_offset=self.code_offset)
        return out

    def generate(self, condition, generator=None, **sampling):
        scale = sampling.get('guidance_scale', self.generator.guidance_scale)
        rows = Condition.cat([condition, self.null_condition(condition)]) \
            if scale != 1 else condition
        codes = self.generator.sample(
            len(condition), self.num_image_tokens, self._predict(rows),
            generator, class_offset=self.code_offset, **sampling)
        return self.gen_tokenizer.decode(codes.to(condition.embeds.device))

    @staticmethod
    def weightless_config(cfg):
        """``cfg`` for building the architecture without weights (the
        sizing tools): the published Show-o-512 shapes
        (:data:`~reca_toolkit.models.showo_weights.SHOWO_ARCHITECTURES`)
        where the folder is absent."""
        from reca_toolkit.models.showo_weights import SHOWO_ARCHITECTURES
        cfg = copy.deepcopy(dict(cfg))
        pretrained = cfg.pop('pretrained', None)
        if pretrained is None:
            return cfg
        understanding = cfg.get('understanding', 'clip')
        shapes = SHOWO_ARCHITECTURES
        llm_file = Path(pretrained) / 'phi-1_5' / 'config.json'
        llm = json.loads(llm_file.read_text()) if llm_file.is_file() \
            else dict(shapes['llm'])
        llm['vocab_size'] = shapes['vocab_size']
        cfg['config'] = llm
        if understanding == 'clip':
            cfg['vision_config'] = dict(shapes['clip'])
        if cfg.get('tokenizer') is None:
            cfg['tokenizer'] = dict(type='ShowoDemoTokenizer',
                                    pad_to=shapes['text_vocab'])
        cfg['gen_tokenizer'] = dict(cfg.get('gen_tokenizer') or
                                    dict(type='MAGVITv2Tokenizer'))
        return cfg


__all__ = ['ShowoUMM', 'SHOWO_TOKENS', 'showo_demo_tokenizer']
