"""Harmon (Wu et al. 2025, wusize/Harmon) as a UMM: a Qwen2.5 LLM that both
reads and writes images through one masked-autoregressive (MAR) encoder over
KL-16 VAE latents.

Written from the Harmon paper, the MIT-licensed MAR sources (LTH14/mar) and
the published checkpoint layout; Harmon's own code is under a non-commercial
licence and is not used. The pieces, all shared components:

* generation tokenizer: the KL-16 ``AutoencoderKL`` (diffusers), latents
  ``mode() * 0.2325``, :class:`~reca_toolkit.models.encoders.VAETokenizer`;
* generation: :class:`~reca_toolkit.models.generators.
  MaskedAutoregressiveGenerator` -- MAR encoder over the visible latents
  (and buffer tokens), then ``proj_in`` -> LLM after the prompt -> residual
  ``proj_out``, then the MAR decoder and the per-token diffusion head;
* understanding (the RecA dense prompt): the same MAR encoder run unmasked
  on clean latents, then ``proj_in``, with its gradient scaled by 0.1 (not
  detached); the buffer tokens move to the end: ``h * w + 64`` embeddings
  (1088 at 512 px), spliced after ``<|im_start|>user\\n``;
* the Qwen chat template, ``<|im_start|>user\\n...<|im_end|>\\n
  <|im_start|>assistant\\n``.

The token count follows the latent grid of the configured ``image_size``
(upstream hard-codes 1088), so 256 px and tiny configurations work.
"""
import contextlib
import copy
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from reca_toolkit.models.builder import build_component
from reca_toolkit.models.harmon_weights import (KL16_CONFIG, HARMON_VARIANTS,
                                                check_harmon_folder,
                                                load_harmon_weights,
                                                write_harmon_folder)
from reca_toolkit.models.lora import merged_state_dict
from reca_toolkit.models.tokenizers import demo_tokenizer
from reca_toolkit.models.umm.base import (BaseUMM, Condition, run_backbone,
                                          scale_gradient, special_token_ids,
                                          token_condition)
from reca_toolkit.models.weightless import parameters_on_meta
from reca_toolkit.registry import ENCODERS, GENERATORS, TOKENIZERS, UMMS

QWEN_SPECIAL_TOKENS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>')
NULL_PROMPT = 'Generate an image.'
USER, TURN_END = '<|im_start|>user\n', '<|im_end|>'
ASSISTANT = '<|im_end|>\n<|im_start|>assistant\n'

# The published architectures (Qwen2.5-*-Instruct config.json; MAR-B / MAR-H
# of LTH14/mar with Harmon's diffusion heads), for building either size
# without its folder (the sizing tools).
HARMON_ARCHITECTURES = {
    '0.5b': dict(
        llm=dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                 num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32768,
                 rope_theta=1000000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=True),
        mar=dict(encoder_dim=768, encoder_depth=12, encoder_heads=12,
                 decoder_dim=768, decoder_depth=12, decoder_heads=12,
                 head=dict(width=1024, depth=6))),
    '1.5b': dict(
        llm=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                 num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, max_position_embeddings=32768,
                 rope_theta=1000000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=True),
        mar=dict(encoder_dim=1280, encoder_depth=20, encoder_heads=16,
                 decoder_dim=1280, decoder_depth=20, decoder_heads=16,
                 head=dict(width=1536, depth=12))),
}
HARMON_WEIGHTS_HINT = (
    'Harmon needs a local folder with the Qwen2.5-Instruct config and '
    'tokenizer, kl16.ckpt and harmon_{0.5b,1.5b}.pth (wusize/harmon); '
    'reca_toolkit never downloads.')


@TOKENIZERS.register_module(name='QwenDemoTokenizer')
def qwen_demo_tokenizer(vocab_size=1024):
    """A byte-level BPE with Qwen's chat special tokens (ids 0, 1, 2),
    trained in code on Harmon's template, for tiny models."""
    endoftext, im_start, im_end = QWEN_SPECIAL_TOKENS
    return demo_tokenizer(
        QWEN_SPECIAL_TOKENS, [USER, ASSISTANT, 'Generate an image: '],
        vocab_size, eos_token=im_end, pad_token=endoftext)


def build_mlp(width_in, width_out):
    """Harmon's projections between the MAR and LLM widths."""
    return nn.Sequential(nn.Linear(width_in, width_out), nn.SiLU(),
                         nn.Linear(width_out, width_out))


@UMMS.register_module()
class HarmonUMM(BaseUMM):
    """Harmon behind the UMM interface.

    Args:
        pretrained: local folder in the wusize/harmon layout
            (:mod:`~reca_toolkit.models.harmon_weights`).
        variant: '0.5b' (Qwen2.5-0.5B + MAR-B) or '1.5b' (Qwen2.5-1.5B +
            MAR-H): which ``harmon_{variant}`` weights and MAR sizes.
        config: ``Qwen2Config`` arguments for a randomly initialised model
            instead (tests, demos); MAR sizes come from ``mar``.
        vae: ``AutoencoderKL`` arguments; MAR's KL-16 by default.
        tokenizer: a ``TOKENIZERS`` config; by default the folder's.
        frozen: parts kept frozen (:meth:`parts`); the RecA recipe freezes
            the VAE only.
        mar: the generator config; sizes default to ``variant``'s.
        gen_tokenizer: the VAE tokenizer config.
        image_size: the generated (and reconstructed) image size; the
            latent grid, hence every token count, follows from it.
        grad_scale: gradient scale on the understanding embeddings.
        prompt_template: how a text-to-image prompt is phrased.
        weights_dtype, trainable_dtype, attn_implementation,
        gradient_checkpointing, compile_layers, lora, ce_chunk_size: as for
            every UMM (:meth:`BaseUMM.setup_training`); checkpointing covers
            the LLM and the MAR blocks; ``ce_chunk_size`` chunks
            image-to-text's logits.
        max_length: image-to-text sequences (text plus image tokens) are cut
            to this many tokens.
    """
    lora_part = 'llm'

    def __init__(self,
                 pretrained=None,
                 variant='1.5b',
                 config=None,
                 vae=KL16_CONFIG,
                 tokenizer=None,
                 frozen=('vae', ),
                 mar=dict(type='MaskedAutoregressiveGenerator'),
                 gen_tokenizer=dict(type='VAETokenizer',
                                    scaling_factor=0.2325),
                 image_size=512,
                 grad_scale=0.1,
                 prompt_template='Generate an image: {}',
                 weights_dtype='bfloat16',
                 trainable_dtype='float32',
                 attn_implementation='sdpa',
                 gradient_checkpointing=False,
                 compile_layers=False,
                 lora=None,
                 ce_chunk_size=None,
                 max_length=2560):
        super().__init__()
        if (pretrained is None) == (config is None):
            raise ValueError('HarmonUMM needs exactly one of pretrained= (a '
                             'local folder) or config= (random '
                             'initialisation)')
        if variant not in HARMON_VARIANTS:
            raise ValueError(f"variant='{variant}' is not one of "
                             f'{sorted(HARMON_VARIANTS)}')
        from diffusers import AutoencoderKL
        from transformers import Qwen2Config, Qwen2ForCausalLM
        self.pretrained, self.variant = pretrained, variant
        self.weights_dtype = getattr(torch, weights_dtype)
        self.image_size, self.grad_scale = image_size, grad_scale
        self.prompt_template, self.max_length = prompt_template, max_length
        if pretrained is not None:
            check_harmon_folder(pretrained, variant)
            llm_config = Qwen2Config.from_pretrained(pretrained,
                                                     local_files_only=True)
        else:
            llm_config = Qwen2Config(**config)
        self.vae_config = dict(vae)
        llm_config._attn_implementation = attn_implementation
        mar = dict(HARMON_ARCHITECTURES[variant]['mar'], **mar)
        mar['head'] = dict(HARMON_ARCHITECTURES[variant]['mar']['head'],
                           **mar.get('head', {}))
        # With weights to load, nothing is initialised only to be
        # overwritten: parameters start on meta and loading assigns them.
        with parameters_on_meta() if pretrained else \
                contextlib.nullcontext():
            qwen = Qwen2ForCausalLM(llm_config)
            autoencoder = AutoencoderKL(**self.vae_config)
            self.tokenizer = TOKENIZERS.build(
                tokenizer if tokenizer is not None else
                dict(type='HFTokenizer', path=pretrained))
            self.gen_tokenizer = build_component(ENCODERS, gen_tokenizer,
                                                 vae=autoencoder)
            self.mar = build_component(
                GENERATORS, dict(mar, token_dim=self.gen_tokenizer.token_dim))
            self.proj_in = build_mlp(self.mar.encoder_dim,
                                     llm_config.hidden_size)
            self.proj_out = build_mlp(llm_config.hidden_size,
                                      self.mar.encoder_dim)
        # The Hugging Face model is kept for export but not registered: its
        # modules are, once, as ``llm`` and ``lm_head``.
        self.__dict__['hf_llm'] = qwen
        self.llm, self.lm_head = qwen.model, qwen.lm_head
        if pretrained is not None:
            self._load(*load_harmon_weights(pretrained, variant,
                                            self.vae_config))
        self.to(self.weights_dtype)
        self.ids = self._special_ids()
        self.setup_training(frozen, trainable_dtype, lora,
                            gradient_checkpointing, compile_layers,
                            ce_chunk_size)

    def _harmon_modules(self):
        """Harmon's top-level checkpoint names -> our modules."""
        return dict(llm=self.hf_llm, mar=self.mar, proj_in=self.proj_in,
                    proj_out=self.proj_out)

    def _load(self, harmon_state, vae_state):
        for prefix, module in self._harmon_modules().items():
            # Harmon builds its MAR with MAR's class embedding and never
            # uses it; checkpoints may carry it.
            part = {k[len(prefix) + 1:]: v for k, v in harmon_state.items()
                    if k.startswith(prefix + '.')
                    and not k.startswith('mar.class_emb.')}
            missing, unexpected = module.load_state_dict(part, strict=False,
                                                         assign=True)
            if prefix == 'llm' and self.hf_llm.config.tie_word_embeddings:
                self.hf_llm.tie_weights()
                missing = [k for k in missing if k != 'lm_head.weight']
            if missing or unexpected:
                raise ValueError(
                    f"Harmon weights in '{self.pretrained}' do not fit "
                    f'{prefix}: missing {missing[:8]}, unexpected '
                    f'{unexpected[:8]}')
        self.gen_tokenizer.vae.load_state_dict(vae_state, strict=True,
                                               assign=True)

    @staticmethod
    def weightless_config(cfg):
        """``cfg`` rewritten to build the same architecture without weights
        (the sizing tools): the folder's LLM config, or the published one of
        ``variant`` when the folder is absent; the demo tokenizer stands in
        for a missing one."""
        cfg = copy.deepcopy(dict(cfg))
        pretrained = cfg.pop('pretrained', None)
        if pretrained is None:
            return cfg
        variant = cfg.get('variant', '1.5b')
        config_file = Path(pretrained) / 'config.json'
        llm = json.loads(config_file.read_text()) if config_file.is_file() \
            else HARMON_ARCHITECTURES[variant]['llm']
        if cfg.get('tokenizer') is None and not (
                Path(pretrained) / 'tokenizer.json').is_file():
            cfg['tokenizer'] = dict(type='QwenDemoTokenizer')
        elif cfg.get('tokenizer') is None:
            cfg['tokenizer'] = dict(type='HFTokenizer', path=pretrained)
        cfg['config'] = llm
        return cfg

    @staticmethod
    def validate_config(cfg):
        """Fail before anything is written if the weights folder is bad."""
        if cfg.get('pretrained') is not None:
            check_harmon_folder(cfg['pretrained'], cfg.get('variant', '1.5b'))

    def parts(self):
        return dict(llm=self.llm, lm_head=self.lm_head, mar=self.mar,
                    proj_in=self.proj_in, proj_out=self.proj_out,
                    vae=self.gen_tokenizer.vae)

    def no_decay_modules(self):
        # The authors' optimizer constructor exempts the diffusion head.
        return [self.mar.diffloss]

    def sampling_settings(self):
        grid = self.gen_tokenizer.grid(self.image_size)
        return dict(super().sampling_settings(), image_size=self.image_size,
                    image_tokens=grid[0] * grid[1],
                    prompt_template=self.prompt_template,
                    null_prompt=NULL_PROMPT)

    @property
    def generator(self):
        return self.mar

    def _special_ids(self):
        ids = special_token_ids(self.tokenizer, QWEN_SPECIAL_TOKENS,
                                self.llm.config.vocab_size, 'Qwen chat')
        return dict(zip(('endoftext', 'im_start', 'im_end'), ids.values()))

    # prompts ------------------------------------------------------------------
    def _text(self, text):
        return self.tokenizer(text, add_special_tokens=False)['input_ids']

    def _rows(self, rows, image_embeds=None, labels=None):
        return token_condition(rows, self.llm.get_input_embeddings(),
                               self.ids['im_end'], image_embeds, labels)

    def image_condition(self, und_embeds, instructions):
        """``<|im_start|>user\\n[N embeddings]\\n{instruction}<|im_end|>\\n
        <|im_start|>assistant\\n``; the generic (None) instruction is
        "Generate an image." without the leading newline, as the authors
        splice it."""
        head = self._text(USER) + [None] * und_embeds.shape[1]
        rows = [head + self._text(
            (NULL_PROMPT if text is None else f'\n{text}') + ASSISTANT)
            for text in instructions]
        return self._rows(rows, und_embeds)

    def text_condition(self, prompts):
        """``<|im_start|>user\\n{prompt_template(prompt)}<|im_end|>\\n
        <|im_start|>assistant\\n``; the null (None) prompt is "Generate an
        image.", Harmon's classifier-free guidance prompt."""
        rows = [self._text(USER + (
            NULL_PROMPT if text is None else self.prompt_template.format(text))
            + ASSISTANT) for text in prompts]
        return self._rows(rows)

    def conversation_tokens(self, turns, num_image_tokens):
        """The Qwen chat format of an image conversation, the image after
        the first ``<|im_start|>user\\n``; labels mark the answers and
        their ``<|im_end|>``."""
        ids = self._text(USER) + [None] * num_image_tokens
        labels = [-100] * len(ids)
        for i, (question, answer) in enumerate(turns):
            prompt = self._text(('\n' if i == 0 else '\n' + USER) +
                                f'{question}{ASSISTANT}')
            reply = self._text(answer + TURN_END)
            ids += prompt + reply
            labels += [-100] * len(prompt) + reply
        if len(ids) > self.max_length:
            ids, labels = ids[:self.max_length], labels[:self.max_length]
        return ids, labels

    # the UMM interface ----------------------------------------------------------
    def _latents(self, pixels=None, latents=None):
        return self.gen_tokenizer.encode(pixels) if latents is None \
            else latents.float()

    def understanding_features(self, und_pixels):
        if not self.is_frozen('vae'):
            raise ValueError("latents can only be cached while 'vae' is "
                             'frozen')
        return self.gen_tokenizer.encode(und_pixels)

    generation_targets = understanding_features

    def _buffer_last(self, x):
        buffer = self.mar.buffer_size
        return torch.cat([x[:, buffer:], x[:, :buffer]], dim=1)

    def _buffer_first(self, x):
        buffer = self.mar.buffer_size
        return torch.cat([x[:, -buffer:], x[:, :-buffer]], dim=1)

    def encode_understanding(self, und_pixels=None, und_features=None):
        self.require_one('encode_understanding', und_pixels=und_pixels,
                         und_features=und_features)
        latents = self._latents(und_pixels, und_features)
        tokens = self.gen_tokenizer.to_tokens(latents)
        visible = tokens.new_zeros(tokens.shape[:2])
        x_enc = self.mar.encode(tokens, visible, tuple(latents.shape[-2:]))
        return scale_gradient(self._buffer_last(self.proj_in(x_enc)),
                              self.grad_scale)

    def generation_middle(self, condition):
        """The MAR ``middle`` of generation after ``condition``: encoder
        states (buffer first, ``valid`` where real) -> ``proj_in`` -> the LLM
        after ``condition``, buffer last -> residual ``proj_out`` back into
        the MAR width. Public for probes that score MAR's per-token losses
        (:meth:`~reca_toolkit.models.generators.
        MaskedAutoregressiveGenerator.token_losses`)."""

        def middle(x_enc, valid):
            z = self._buffer_last(self.proj_in(x_enc))
            hidden = run_backbone(
                self.llm, condition, z, self._buffer_last(valid),
                use_cache=False).last_hidden_state[:, -z.shape[1]:]
            return x_enc + self.proj_out(
                self._buffer_first(hidden).to(x_enc.dtype))

        return middle

    def generation_loss(self, condition, gen_pixels=None, gen_targets=None,
                        draws=None):
        self.check_generation_inputs(gen_pixels, gen_targets, draws)
        latents = self._latents(gen_pixels, gen_targets)
        tokens = self.gen_tokenizer.to_tokens(latents)
        return self.mar.loss(
            tokens, tuple(latents.shape[-2:]),
            self.generation_middle(condition),
            self.mar.draw(draws, tokens.shape[1], tokens.device))

    # Image-to-text rows are chat rows, as the prompts'.
    answer_condition = _rows

    def generate(self, condition, generator=None, **sampling):
        scale = sampling.get('guidance_scale', self.mar.guidance_scale)
        rows = Condition.cat([condition, self.null_condition(condition)]) \
            if scale != 1 else condition
        grid = self.gen_tokenizer.grid(self.image_size)
        tokens = self.mar.sample(len(condition), grid,
                                 self.generation_middle(rows), generator,
                                 **sampling)
        return self.gen_tokenizer.decode(
            self.gen_tokenizer.from_tokens(tokens, grid))

    def save_pretrained(self, out_dir):
        """Write the wusize/harmon layout back (``harmon_{variant}.pth`` and
        ``kl16`` plus their safetensors, the LLM config and tokenizer); the
        folder appears complete or not at all."""
        harmon_state = {}
        for prefix, module in self._harmon_modules().items():
            state = merged_state_dict(module) if self.lora and \
                prefix == 'llm' else module.state_dict()
            harmon_state.update({f'{prefix}.{k}': v.to(self.weights_dtype)
                                 if v.is_floating_point() else v
                                 for k, v in state.items()})
        self.hf_llm.config.dtype = self.weights_dtype
        vae_state = {k: v.to(self.weights_dtype) for k, v in
                     self.gen_tokenizer.vae.state_dict().items()}
        with tempfile.TemporaryDirectory() as tokenizer_dir:
            if self.pretrained is None:
                self.tokenizer.save_pretrained(tokenizer_dir)
            return write_harmon_folder(
                out_dir, harmon_state, vae_state, self.hf_llm.config,
                self.pretrained or tokenizer_dir, self.variant,
                vae_config=self.vae_config)
