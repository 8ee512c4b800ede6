"""Janus-Pro (deepseek-ai/Janus) as a UMM, on transformers' own Janus classes.

``transformers.JanusForConditionalGeneration`` has no training forward for
image tokens; this adapter writes one. The pieces:

* understanding: SigLIP ``vision_model`` + ``aligner`` (576 tokens at 384 px),
  :class:`~reca_toolkit.models.encoders.janus.JanusSigLIPEncoder`;
* generation targets: VQ-16 codes by the original quantizer rule,
  :class:`~reca_toolkit.models.encoders.janus.JanusVQTokenizer`;
* generation: ``generation_embeddings`` + ``generation_aligner`` -> LLM ->
  ``generation_head``, teacher-forced cross-entropy over the codes only,
  :class:`~reca_toolkit.models.generators.AutoregressiveCodeGenerator`;
* the DeepSeek chat template of Janus's SFT format, built here.

Prompts are tokenized a text piece at a time between special tokens -- what
Janus's processor does, since its tokenizer splits at special tokens -- and
image placeholders are replaced by the understanding embeddings.
"""
import copy
import os
import shutil
import tempfile
from pathlib import Path

import torch
from mmengine.logging import print_log

from reca_toolkit.models.builder import build_component
from reca_toolkit.models.local_weights import check_hf_folder
from reca_toolkit.models.lora import merged_state_dict
from reca_toolkit.models.tokenizers import demo_tokenizer
from reca_toolkit.models.umm.base import BaseUMM, Condition
from reca_toolkit.models.umm.janus_architectures import \
    JANUS_PRO_ARCHITECTURES
from reca_toolkit.registry import ENCODERS, GENERATORS, TOKENIZERS, UMMS

JANUS_SYSTEM_PROMPT = (
    'You are a helpful language and vision assistant. You are able to '
    'understand the visual content that the user provides, and assist the '
    'user with a variety of tasks using natural language.')
JANUS_WEIGHTS_HINT = (
    'Get the transformers-format weights (deepseek-community/Janus-Pro-1B '
    'or -7B) on a machine with internet access, e.g. `huggingface-cli '
    'download deepseek-community/Janus-Pro-1B --local-dir '
    'checkpoints/Janus-Pro-1B`, and copy the folder here; reca_toolkit never '
    'downloads.')
# Janus's own special tokens. The tokenizer built in code gives them ids 0..5
# so that a tiny JanusConfig can set ``image_token_id=3``.
JANUS_SPECIAL_TOKENS = ('<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>',
                        '<｜▁pad▁｜>', '<image_placeholder>',
                        '<begin_of_image>', '<end_of_image>')
GENERIC_INSTRUCTION = 'Generate an image.'
# Files a Janus processor needs besides the weights; carried over on export.
PROCESSOR_FILES = ('tokenizer.json', 'tokenizer_config.json',
                   'special_tokens_map.json', 'preprocessor_config.json',
                   'processor_config.json', 'chat_template.json',
                   'chat_template.jinja', 'generation_config.json')


def load_janus(pretrained, config, dtype, attn_implementation):
    """A ``JanusForConditionalGeneration`` from a local folder or a config."""
    from transformers import JanusConfig, JanusForConditionalGeneration
    if (pretrained is None) == (config is None):
        raise ValueError('JanusProUMM needs exactly one of pretrained= (a '
                         'local folder) or config= (random initialisation)')
    if pretrained is not None:
        check_hf_folder(pretrained, 'Janus-Pro', JANUS_WEIGHTS_HINT,
                        need_tokenizer=False)
        model_type = JanusConfig.get_config_dict(
            pretrained, local_files_only=True)[0].get('model_type')
        if model_type != 'janus':
            raise ValueError(
                f"'{pretrained}' holds a model_type='{model_type}' "
                "checkpoint; JanusProUMM loads the transformers layout "
                "(model_type='janus'). " + JANUS_WEIGHTS_HINT)
        return JanusForConditionalGeneration.from_pretrained(
            pretrained, local_files_only=True, dtype=dtype,
            attn_implementation=attn_implementation)
    # Real Janus-Pro has an untied lm_head; JanusConfig ties by default.
    janus_config = JanusConfig(**{'tie_word_embeddings': False, **config})
    return JanusForConditionalGeneration._from_config(
        janus_config, dtype=dtype, attn_implementation=attn_implementation)


def publish_permissions(folder):
    """Give ``folder`` and its files the modes the umask allows, as a plain
    ``mkdir`` and ``open`` would: ``mkdtemp`` makes them private (0700)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@TOKENIZERS.register_module(name='JanusDemoTokenizer')
def janus_demo_tokenizer(vocab_size=1024):
    """A byte-level BPE with Janus's special tokens, trained in code on
    Janus's chat template (:func:`~reca_toolkit.models.tokenizers.
    demo_tokenizer`), for tiny models."""
    bos, eos, pad, image, boi, eoi = JANUS_SPECIAL_TOKENS
    return demo_tokenizer(
        JANUS_SPECIAL_TOKENS, ['<|User|>: ', '\n\n<|Assistant|>:'],
        vocab_size, bos_token=bos, eos_token=eos, pad_token=pad,
        extra_special_tokens=dict(image_token=image, boi_token=boi,
                                  eoi_token=eoi))


@UMMS.register_module()
class JanusProUMM(BaseUMM):
    """Janus-Pro behind the UMM interface.

    Args:
        pretrained: local folder in the transformers layout
            (deepseek-community/Janus-Pro-1B / -7B).
        config: ``JanusConfig`` keyword arguments for a randomly initialised
            model instead (tests, demos, throughput work).
        tokenizer: a ``TOKENIZERS`` config; by default the tokenizer of
            ``pretrained``.
        frozen: parts kept frozen; see :meth:`parts` for the names.
        und_encoder, gen_tokenizer, generator: component configs, built
            around this model's modules.
        weights_dtype: dtype of frozen parts (and of exported weights).
        trainable_dtype: dtype of trainable parts; float32 keeps AdamW's
            small updates from vanishing in bfloat16 weights, while autocast
            still computes in bfloat16.
        attn_implementation: 'sdpa', 'eager' or 'flash_attention_2' (needs
            the flash-attn package and a GPU).
        gradient_checkpointing: checkpoint the LLM's layers.
        ce_chunk_size: compute the logits of every cross-entropy (generation
            head and ``lm_head``) this many positions at a time, never all
            at once (``losses.head_cross_entropy``); None materialises
            them all.
        compile_layers: ``torch.compile`` each LLM decoder layer: True, or a
            dict of ``torch.compile`` arguments. One layer's code is compiled
            once and reused by every layer; compiling the whole train step
            would trace tokenization and Python control flow instead.
        lora: a ``peft.LoraConfig`` dict (``r``, ``lora_alpha``,
            ``target_modules``, ...): train low-rank adapters on the LLM
            instead of its weights, which then stay frozen in
            ``weights_dtype``. Exports merge the adapters. Needs peft
            (``pip install 'reca_toolkit[lora]'``).
        system_prompt: Janus's understanding system prompt ('' for none).
        max_length: image-to-text sequences are cut to this many tokens.
    """
    draws_at_random = False  # teacher-forced cross-entropy

    def __init__(self,
                 pretrained=None,
                 config=None,
                 tokenizer=None,
                 frozen=('vision_model', 'vqmodel'),
                 und_encoder=dict(type='JanusSigLIPEncoder'),
                 gen_tokenizer=dict(type='JanusVQTokenizer'),
                 generator=dict(type='AutoregressiveCodeGenerator'),
                 weights_dtype='bfloat16',
                 trainable_dtype='float32',
                 attn_implementation='sdpa',
                 gradient_checkpointing=False,
                 ce_chunk_size=None,
                 compile_layers=False,
                 lora=None,
                 system_prompt=JANUS_SYSTEM_PROMPT,
                 max_length=2048):
        super().__init__()
        janus = load_janus(pretrained, config, getattr(torch, weights_dtype),
                           attn_implementation)
        # The Hugging Face model is kept for export but not registered as a
        # submodule: its modules are registered once, through the components
        # below, so checkpoints hold each weight once.
        self.__dict__['hf_model'] = janus
        self.pretrained = pretrained
        self.weights_dtype = getattr(torch, weights_dtype)
        self.system_prompt = system_prompt
        self.max_length = max_length
        self.tokenizer = (TOKENIZERS.build(tokenizer) if tokenizer is not None
                          else TOKENIZERS.build(dict(type='HFTokenizer',
                                                     path=pretrained)))
        inner = janus.model
        self.und_encoder = build_component(
            ENCODERS, und_encoder, vision_model=inner.vision_model,
            aligner=inner.aligner)
        self.gen_tokenizer = build_component(
            ENCODERS, gen_tokenizer, vqmodel=inner.vqmodel)
        head_codes = inner.generation_head.vision_head.out_features
        if self.gen_tokenizer.num_codes != head_codes:
            raise ValueError(
                f'gen_tokenizer {type(self.gen_tokenizer).__name__} has '
                f'{self.gen_tokenizer.num_codes} codes but the generation '
                f'head predicts {head_codes} (vq_config.num_embeddings); set '
                f'vq_config.num_embeddings={self.gen_tokenizer.num_codes}')
        self.generator = build_component(
            GENERATORS, generator,
            code_embeddings=inner.generation_embeddings,
            code_aligner=inner.generation_aligner,
            head=inner.generation_head)
        self.language_model = inner.language_model
        self.lm_head = janus.lm_head
        self.ids = self._special_ids(janus.config)
        self.setup_training(frozen, trainable_dtype, lora,
                            gradient_checkpointing, compile_layers,
                            ce_chunk_size)

    @staticmethod
    def weightless_config(cfg):
        """``cfg`` rewritten to build the same architecture from a config
        alone, for the sizing tools (built without weights).

        The architecture is the ``pretrained`` folder's ``config.json`` or,
        when the folder is absent, the published architecture of its name
        (:data:`JANUS_PRO_ARCHITECTURES`). Without the folder's tokenizer the
        demo tokenizer stands in; prompts then differ from the real ones by a
        few tokens of the ~1200 in a 384 px RecA sequence.
        """
        cfg = copy.deepcopy(dict(cfg))
        pretrained = cfg.pop('pretrained', None)
        if pretrained is None:
            return cfg
        folder = Path(pretrained)
        if (folder / 'config.json').is_file():
            from transformers import JanusConfig
            config = JanusConfig.get_config_dict(
                str(folder), local_files_only=True)[0]
        elif folder.name in JANUS_PRO_ARCHITECTURES:
            config = copy.deepcopy(JANUS_PRO_ARCHITECTURES[folder.name])
        else:
            raise FileNotFoundError(
                f"JanusProUMM: '{pretrained}' has no config.json and "
                f"'{folder.name}' is not a known architecture "
                f'({", ".join(JANUS_PRO_ARCHITECTURES)}); set config= to '
                'the JanusConfig arguments instead')
        if cfg.get('tokenizer') is None:
            if (folder / 'tokenizer.json').is_file():
                cfg['tokenizer'] = dict(type='HFTokenizer', path=pretrained)
            else:
                cfg['tokenizer'] = dict(type='JanusDemoTokenizer')
                config['image_token_id'] = JANUS_SPECIAL_TOKENS.index(
                    '<image_placeholder>')
        cfg['config'] = config
        return cfg

    @staticmethod
    def validate_config(cfg):
        """Fail before anything is written if the weights folder is bad."""
        if cfg.get('pretrained') is not None:
            check_hf_folder(cfg['pretrained'], 'Janus-Pro', JANUS_WEIGHTS_HINT,
                            need_tokenizer=cfg.get('tokenizer') is None)

    def parts(self):
        inner = self.hf_model.model
        return dict(
            vision_model=inner.vision_model,
            aligner=inner.aligner,
            vqmodel=inner.vqmodel,
            generation_embeddings=inner.generation_embeddings,
            generation_aligner=inner.generation_aligner,
            generation_head=inner.generation_head,
            language_model=inner.language_model,
            lm_head=self.hf_model.lm_head)

    def sampling_settings(self):
        return dict(super().sampling_settings(),
                    image_tokens=self.gen_tokenizer.num_tokens)

    def _special_ids(self, config):
        tok = self.tokenizer
        # Janus's processor pads (and blanks CFG prompts) with this token.
        ids = dict(bos=tok.bos_token_id, eos=tok.eos_token_id,
                   pad=tok.convert_tokens_to_ids('<｜▁pad▁｜>'),
                   image=config.image_token_id,
                   boi=tok.convert_tokens_to_ids('<begin_of_image>'),
                   eoi=tok.convert_tokens_to_ids('<end_of_image>'))
        missing = [k for k, v in ids.items()
                   if v is None or v == tok.unk_token_id]
        if missing:
            raise ValueError(f'the tokenizer lacks Janus special tokens: '
                             f'{missing}')
        placeholder = tok.convert_tokens_to_ids('<image_placeholder>')
        if placeholder != ids['image']:
            raise ValueError(
                f'tokenizer maps <image_placeholder> to {placeholder} but the '
                f'model config says image_token_id={ids["image"]}')
        vocab = config.text_config.vocab_size
        if len(tok) > vocab:
            raise ValueError(f'the tokenizer has {len(tok)} tokens but the '
                             f'Janus model only {vocab}')
        return ids

    # prompts --------------------------------------------------------------------
    def _text(self, text):
        return self.tokenizer(text, add_special_tokens=False)['input_ids']

    def _image_slots(self, num):
        return [self.ids['boi']] + [self.ids['image']] * num + [self.ids['eoi']]

    def _embed(self, ids, image_embeds=None):
        embeds = self.language_model.get_input_embeddings()(ids)
        if image_embeds is not None:
            slots = (ids == self.ids['image']).unsqueeze(-1)
            embeds = embeds.masked_scatter(slots, image_embeds.to(embeds.dtype))
        return embeds

    def _left_pad(self, rows, labels=None):
        """Token rows -> left-padded ``ids``, ``mask`` (and ``labels``, which
        stay on the host: the loss finds its scored positions there, where
        it need not wait for the device)."""
        device = self.lm_head.weight.device
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.ids['pad'], dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        target = torch.full_like(ids, -100)
        for i, row in enumerate(rows):
            ids[i, length - len(row):] = torch.tensor(row)
            mask[i, length - len(row):] = 1
            if labels is not None:
                target[i, length - len(row):] = torch.tensor(labels[i])
        out = (ids.to(device), mask.to(device))
        return out + (target, ) if labels is not None else out

    def _condition(self, rows, image_embeds=None):
        ids, mask = self._left_pad(rows)
        # Janus's CFG prompt keeps only BOS and the final <begin_of_image>.
        content = mask.bool()
        content[:, -1] = False
        content[torch.arange(len(rows)), mask.shape[1] - mask.sum(1)] = False
        return Condition(self._embed(ids, image_embeds), mask,
                         extras=dict(content=content))

    def image_condition(self, und_embeds, instructions):
        """``<|User|>: <boi>[N embeddings]<eoi>\\n{instruction}\\n\\n
        <|Assistant|>:<boi>``; a None instruction is "Generate an image.".
        """
        head = self._text('<|User|>: ') + self._image_slots(und_embeds.shape[1])
        rows = [[self.ids['bos']] + head + self._text(
            f'\n{GENERIC_INSTRUCTION if text is None else text}'
            '\n\n<|Assistant|>:') +
            [self.ids['boi']] for text in instructions]
        return self._condition(rows, und_embeds)

    def text_condition(self, prompts):
        """``<|User|>: {prompt}\\n\\n<|Assistant|>:<boi>``; a None prompt
        is the template of an empty prompt, blanked as :meth:`null_condition`
        blanks."""
        rows = [[self.ids['bos']] +
                self._text(f'<|User|>: {text or ""}\n\n<|Assistant|>:') +
                [self.ids['boi']] for text in prompts]
        return self._blank(self._condition(rows),
                           [text is None for text in prompts])

    def null_condition(self, condition):
        """Janus's unconditional prompt: ``condition`` with every position
        but BOS and the final <begin_of_image> set to the pad embedding, so
        it keeps the length of the prompt it guides."""
        return self._blank(condition, [True] * len(condition))

    def _blank(self, condition, rows):
        device = condition.embeds.device
        rows = torch.tensor(rows, device=device)[:, None]
        content = condition.extras['content']
        blank = (content & rows).unsqueeze(-1)
        pad = self.language_model.get_input_embeddings()(
            torch.tensor(self.ids['pad'], device=device))
        embeds = torch.where(blank, pad.to(condition.embeds.dtype),
                             condition.embeds)
        return Condition(embeds, condition.mask,
                         extras=dict(content=content & ~rows))

    def conversation_tokens(self, turns, num_image_tokens):
        """Janus's understanding format; labels mark the answers only."""
        system = f'{self.system_prompt}\n\n' if self.system_prompt else ''
        ids = [self.ids['bos']] + self._text(f'{system}<|User|>: ') + \
            self._image_slots(num_image_tokens)
        labels = [-100] * len(ids)
        for i, (question, answer) in enumerate(turns):
            prompt = self._text(('\n' if i == 0 else '<|User|>: ') +
                                f'{question}\n\n<|Assistant|>:')
            reply = self._text(f' {answer}') + [self.ids['eos']]
            ids += prompt + reply
            labels += [-100] * len(prompt) + reply
        if len(ids) > self.max_length:
            print_log(f'image-to-text sample of {len(ids)} tokens cut to '
                      f'max_length={self.max_length}', logger='current',
                      level=30)
            ids, labels = ids[:self.max_length], labels[:self.max_length]
        return ids, labels

    # the UMM interface -------------------------------------------------------------
    def understanding_features(self, und_pixels):
        if not self.is_frozen('vision_model'):
            raise ValueError('understanding features can only be cached '
                             "while 'vision_model' is frozen")
        return self.und_encoder.features(und_pixels)

    def encode_understanding(self, und_pixels=None, und_features=None):
        self.require_one('encode_understanding', und_pixels=und_pixels,
                         und_features=und_features)
        if und_features is None:
            return self.und_encoder(und_pixels)
        return self.und_encoder.align(und_features)

    def generation_targets(self, gen_pixels):
        if not self.is_frozen('vqmodel'):
            raise ValueError("VQ codes can only be cached while 'vqmodel' "
                             'is frozen')
        return self.gen_tokenizer.encode(gen_pixels)

    def generation_loss(self, condition, gen_pixels=None, gen_targets=None,
                        draws=None):
        self.check_generation_inputs(gen_pixels, gen_targets, draws)
        codes = self.gen_tokenizer.encode(gen_pixels) if gen_targets is None \
            else gen_targets.long()
        return self.generator.loss(self.language_model, condition, codes,
                                   chunk_size=self.ce_chunk_size)

    def answer_condition(self, rows, image_embeds, labels=None):
        ids, mask, *target = self._left_pad(rows, labels)
        condition = Condition(self._embed(ids, image_embeds), mask)
        return (condition, *target) if labels is not None else condition

    def generate(self, condition, generator=None, **sampling):
        codes = self.generator.sample(
            self.language_model, condition, self.null_condition(condition),
            self.gen_tokenizer.num_tokens, generator=generator, **sampling)
        return self.gen_tokenizer.decode(codes)

    def save_pretrained(self, out_dir):
        """Write a folder ``JanusForConditionalGeneration.from_pretrained``
        loads, with the source folder's processor and tokenizer files.

        The folder appears complete or not at all.
        """
        from transformers import (GenerationConfig, JanusImageProcessor,
                                  JanusProcessor)
        out_dir = Path(out_dir)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise FileExistsError(f'export folder {out_dir} is not empty')
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}-',
                                    dir=out_dir.parent))
        try:
            state = merged_state_dict(self.hf_model) if self.lora \
                else self.hf_model.state_dict()
            state = {k: v.to(self.weights_dtype) if v.is_floating_point()
                     else v for k, v in state.items()}
            self.hf_model.config.dtype = self.weights_dtype
            self.hf_model.save_pretrained(tmp, state_dict=state)
            carried = [name for name in PROCESSOR_FILES
                       if self.pretrained
                       and (Path(self.pretrained) / name).is_file()]
            for name in carried:
                shutil.copy2(Path(self.pretrained) / name, tmp / name)
            if not carried:
                size = self.und_encoder.image_size
                JanusProcessor(
                    JanusImageProcessor(size=dict(height=size, width=size),
                                        image_mean=[0.5] * 3,
                                        image_std=[0.5] * 3),
                    self.tokenizer,
                    num_image_tokens=self.hf_model.config.vision_config
                    .num_image_tokens,
                ).save_pretrained(tmp)
            if 'generation_config.json' not in carried:
                # What transformers' image generation reads.
                GenerationConfig(
                    bos_token_id=self.ids['bos'], eos_token_id=self.ids['eos'],
                    pad_token_id=self.ids['pad'],
                    guidance_scale=self.generator.guidance_scale,
                    generation_kwargs=dict(boi_token_id=self.ids['boi']),
                ).save_pretrained(tmp)
            publish_permissions(tmp)
            if out_dir.exists():
                out_dir.rmdir()
            tmp.rename(out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out_dir
