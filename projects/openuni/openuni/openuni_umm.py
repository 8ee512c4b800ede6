"""OpenUni (Wu et al. 2025) as a UMM: a frozen InternVL3 reads, 256
learnable meta-queries carry its state to a SANA diffusion transformer that
writes DC-AE latents.

Built from the transformers and diffusers classes and the OpenUni paper;
OpenUni's own code is under a non-commercial licence and is not used. The
pieces:

* understanding (the RecA dense prompt): transformers
  ``InternVLForConditionalGeneration.get_image_features`` -- InternViT at
  448 px (pixels in [-1, 1] -> [0, 1] -> ImageNet mean / std, bilinear
  resize), pixel shuffle 0.5, ``mlp1`` -- 256 embeddings in the LLM's input
  space, frozen (no gradient);
* the template ``<|im_start|>user\\n<img>[256]</img>\\n{instruction}
  <|im_end|>\\n<|im_start|>assistant\\n<img>`` (InternVL's chat format), then
  the 256 meta-queries, through the frozen LLM;
* the meta-queries' last hidden states -> ``connector`` (a SigLIP-style
  encoder: transformers ``SiglipEncoder``) -> ``projector`` (linear) ->
  SANA's ``encoder_hidden_states``, no mask;
* generation: diffusers ``SanaTransformer2DModel`` over ``AutoencoderDC``
  latents (:class:`~reca_toolkit.models.encoders.VAETokenizer`), trained
  and sampled by the core
  :class:`~reca_toolkit.models.generators.FlowMatchingGenerator` (uniform
  timesteps, target ``noise - x0``; 20 DPM-Solver steps, guidance 4.5
  against "Generate an image.").
"""
import contextlib
import copy
import json
from pathlib import Path

import torch
from torch import nn
from transformers import SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import (SiglipEncoder,
                                                        SiglipPreTrainedModel)

from reca_toolkit.models.builder import build_component
from reca_toolkit.models.lora import merged_state_dict
from reca_toolkit.models.tokenizers import demo_tokenizer
from reca_toolkit.models.umm.base import (BaseUMM, Condition, run_backbone,
                                          special_token_ids, token_condition)
from reca_toolkit.models.weightless import parameters_on_meta
from reca_toolkit.registry import ENCODERS, GENERATORS, TOKENIZERS, UMMS

from .weights import (CONFIG_NAME, DEFAULT_NAMES, check_openuni_weights,
                      dcae_folder, read_checkpoint, read_openuni_config,
                      resolve_paths, sana_folder, scheduler_config,
                      write_folder)

SPECIAL_TOKENS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<img>',
                  '</img>', '<IMG_CONTEXT>')
NULL_PROMPT = 'Generate an image.'
USER = '<|im_start|>user\n'
ASSISTANT = '<|im_end|>\n<|im_start|>assistant\n'
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The published architectures (InternVL3-{1B,2B}-hf, SANA 600M / 1600M
# 512 px and DC-AE f32c32 config.json files), for building either size
# without its folders (the sizing tools). The connectors are those of
# wusize/OpenUni configs/models/openuni_{b,l}_internvl3_*_sana_*_512_hf.py:
# 6 layers at the LLM's width, with their own MLP width and head count.
_INTERNVIT_300M = dict(hidden_size=1024, num_hidden_layers=24,
                       num_attention_heads=16, intermediate_size=4096,
                       image_size=[448, 448], patch_size=[14, 14],
                       layer_scale_init_value=0.1, use_qk_norm=False,
                       norm_type='layer_norm', use_mean_pooling=True)
_DCAE_F32C32 = dict(
    in_channels=3, latent_channels=32, attention_head_dim=32,
    encoder_block_types=['ResBlock'] * 3 + ['EfficientViTBlock'] * 3,
    decoder_block_types=['ResBlock'] * 3 + ['EfficientViTBlock'] * 3,
    encoder_block_out_channels=[128, 256, 512, 512, 1024, 1024],
    decoder_block_out_channels=[128, 256, 512, 512, 1024, 1024],
    encoder_layers_per_block=[2, 2, 2, 3, 3, 3],
    decoder_layers_per_block=[3, 3, 3, 3, 3, 3],
    encoder_qkv_multiscales=[[], [], [], [5], [5], [5]],
    decoder_qkv_multiscales=[[], [], [], [5], [5], [5]],
    upsample_block_type='interpolate', downsample_block_type='Conv',
    decoder_norm_types='rms_norm', decoder_act_fns='silu',
    scaling_factor=0.41407)
OPENUNI_ARCHITECTURES = {
    'b': dict(
        internvl=dict(
            vision_config=_INTERNVIT_300M,
            text_config=dict(
                model_type='qwen2', vocab_size=151674, hidden_size=896,
                intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2,
                max_position_embeddings=32768, rope_theta=1000000.0,
                rms_norm_eps=1e-6, tie_word_embeddings=False),
            image_token_id=151667, image_seq_length=256,
            downsample_ratio=0.5),
        sana=dict(in_channels=32, out_channels=32, num_attention_heads=36,
                  attention_head_dim=32, num_layers=28,
                  num_cross_attention_heads=16, cross_attention_head_dim=72,
                  cross_attention_dim=1152, caption_channels=2304,
                  mlp_ratio=2.5, sample_size=16, patch_size=1),
        dcae=_DCAE_F32C32,
        connector=dict(hidden_size=896, intermediate_size=3072,
                       num_hidden_layers=6, num_attention_heads=14)),
    'l': dict(
        internvl=dict(
            vision_config=_INTERNVIT_300M,
            text_config=dict(
                model_type='qwen2', vocab_size=151674, hidden_size=1536,
                intermediate_size=8960, num_hidden_layers=28,
                num_attention_heads=12, num_key_value_heads=2,
                max_position_embeddings=32768, rope_theta=1000000.0,
                rms_norm_eps=1e-6, tie_word_embeddings=False),
            image_token_id=151667, image_seq_length=256,
            downsample_ratio=0.5),
        sana=dict(in_channels=32, out_channels=32, num_attention_heads=70,
                  attention_head_dim=32, num_layers=20,
                  num_cross_attention_heads=20, cross_attention_head_dim=112,
                  cross_attention_dim=2240, caption_channels=2304,
                  mlp_ratio=2.5, sample_size=16, patch_size=1),
        dcae=_DCAE_F32C32,
        connector=dict(hidden_size=1536, intermediate_size=8960,
                       num_hidden_layers=6, num_attention_heads=24)),
}
DEFAULT_FROZEN = ('vision', 'llm', 'lm_head', 'vae')


@TOKENIZERS.register_module(name='InternVLDemoTokenizer')
def internvl_demo_tokenizer(vocab_size=1024):
    """A byte-level BPE with InternVL's chat and image special tokens (ids
    0-5 in :data:`SPECIAL_TOKENS` order), trained in code, for tiny
    models."""
    return demo_tokenizer(
        SPECIAL_TOKENS, [USER, ASSISTANT, 'Generate an image: '], vocab_size,
        eos_token='<|im_end|>', pad_token='<|endoftext|>')


class MetaQueries(nn.Module):
    """The learnable queries appended after the prompt, ``[Q, D]``."""

    def __init__(self, num_queries, width):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, width) *
                                    width ** -0.5)

    def forward(self, batch_size):
        return self.queries.unsqueeze(0).expand(batch_size, -1, -1)


class Connector(SiglipPreTrainedModel):
    """A SigLIP-style encoder (transformers ``SiglipEncoder``, bidirectional)
    over the meta-queries' hidden states; a ``PreTrainedModel`` so that
    SigLIP's initialisation and the shared activation-checkpointing switch
    apply to it.

    Args:
        config: ``SiglipVisionConfig`` arguments (width, depth, heads).
    """

    def __init__(self, config, attn_implementation='sdpa'):
        config = SiglipVisionConfig(**config)
        config._attn_implementation = attn_implementation
        super().__init__(config)
        self.encoder = SiglipEncoder(config)
        self.post_init()

    def forward(self, hidden):
        return self.encoder(inputs_embeds=hidden).last_hidden_state


@UMMS.register_module()
class OpenUniUMM(BaseUMM):
    """OpenUni behind the UMM interface.

    Args:
        pretrained: a folder with the four parts under their default names
            (an export; :data:`~.weights.DEFAULT_NAMES`), or None.
        weights: paths of single parts, over ``pretrained``'s:
            ``checkpoint`` (the OpenUni ``.pth``), ``internvl`` (the -hf
            folder), ``sana``, ``dcae`` (diffusers folders). Missing parts
            fail before anything is built, each named.
        variant: 'b' (InternVL3-1B + SANA 0.6B) or 'l' (InternVL3-2B +
            SANA 1.6B): the connector's default size, and the architecture
            of the sizing tools.
        config: random initialisation instead (tests, demos): a dict of
            ``internvl`` (``InternVLConfig`` arguments), ``sana``
            (``SanaTransformer2DModel``), ``dcae`` (``AutoencoderDC``) and
            optionally ``connector`` (``SiglipVisionConfig``).
        connector: connector size (``SiglipVisionConfig`` arguments); by
            default an export's recorded one, else ``variant``'s. Its
            ``hidden_size`` must be the LLM's width.
        num_queries: meta-queries (256).
        tokenizer: a ``TOKENIZERS`` config; by default the InternVL folder's.
        frozen: parts kept frozen (:meth:`parts`); by default InternVL3
            (``vision``, ``llm``, ``lm_head``) and the DC-AE. With ``lora=``
            the default leaves ``llm`` to LoRA, whose base weights stay
            frozen.
        generator: the flow-matching generator config.
        gen_tokenizer: the VAE tokenizer config (scaling from the DC-AE
            config).
        image_size: generated image size (512); und_size: InternViT input
            (448).
        prompt_template: how a text-to-image prompt is phrased.
        weights_dtype, trainable_dtype, attn_implementation,
        gradient_checkpointing, compile_layers, lora, ce_chunk_size: as for
            every UMM (:meth:`BaseUMM.setup_training`).
        max_length: image-to-text sequences are cut to this many tokens.
    """
    lora_part = 'llm'
    crossed_frozen_parts = ('llm', )

    def __init__(self,
                 pretrained=None,
                 weights=None,
                 variant='b',
                 config=None,
                 connector=None,
                 num_queries=256,
                 tokenizer=None,
                 frozen=None,
                 generator=dict(type='FlowMatchingGenerator'),
                 gen_tokenizer=dict(type='VAETokenizer'),
                 image_size=512,
                 und_size=448,
                 prompt_template='Generate an image: {}',
                 weights_dtype='bfloat16',
                 trainable_dtype='float32',
                 attn_implementation='sdpa',
                 gradient_checkpointing=False,
                 compile_layers=False,
                 lora=None,
                 ce_chunk_size=None,
                 max_length=2048):
        super().__init__()
        has_weights = pretrained is not None or bool(weights)
        if has_weights == (config is not None):
            raise ValueError('OpenUniUMM needs exactly one of pretrained= / '
                             'weights= (local files) or config= (random '
                             'initialisation)')
        if variant not in OPENUNI_ARCHITECTURES:
            raise ValueError(f"variant='{variant}' is not one of "
                             f'{sorted(OPENUNI_ARCHITECTURES)}')
        from diffusers import AutoencoderDC, SanaTransformer2DModel
        from transformers import (InternVLConfig,
                                  InternVLForConditionalGeneration)
        self.pretrained, self.variant = pretrained, variant
        self.weights_dtype = getattr(torch, weights_dtype)
        self.image_size, self.und_size = image_size, und_size
        self.prompt_template, self.max_length = prompt_template, max_length
        self.paths = None
        recorded = read_openuni_config(pretrained)
        if has_weights:
            self.paths = resolve_paths(pretrained, weights)
            check_openuni_weights(self.paths)
            ivl_config = InternVLConfig.from_pretrained(
                self.paths['internvl'], local_files_only=True)
            sana_config = dict(SanaTransformer2DModel.load_config(
                sana_folder(self.paths['sana'])))
            dcae_config = dict(AutoencoderDC.load_config(
                dcae_folder(self.paths['dcae'])))
            connector = connector or recorded.get('connector') or \
                OPENUNI_ARCHITECTURES[variant]['connector']
            num_queries = recorded.get('num_queries', num_queries)
            sched = scheduler_config(sana_folder(self.paths['sana']).parent
                                     if sana_folder(self.paths['sana']) !=
                                     self.paths['sana'] else None)
        else:
            config = copy.deepcopy(dict(config))
            ivl_config = InternVLConfig(**config['internvl'])
            sana_config, dcae_config = config['sana'], config['dcae']
            connector = connector or config.get('connector') or \
                OPENUNI_ARCHITECTURES[variant]['connector']
            sched = None
        sana_config = {k: v for k, v in sana_config.items()
                       if not k.startswith('_')}
        dcae_config = {k: v for k, v in dcae_config.items()
                       if not k.startswith('_')}
        self.sana_config, self.dcae_config = sana_config, dcae_config
        self.connector_config = dict(connector)
        self.num_queries = num_queries
        ivl_config.text_config._attn_implementation = attn_implementation
        ivl_config.vision_config._attn_implementation = attn_implementation
        ivl_config._attn_implementation = attn_implementation
        width = ivl_config.text_config.hidden_size
        if self.connector_config.get('hidden_size', width) != width:
            raise ValueError(
                f"connector hidden_size {self.connector_config['hidden_size']}"
                f" differs from the LLM's width {width}")
        self.connector_config['hidden_size'] = width
        generator = dict(generator)
        if sched is not None and 'scheduler_config' not in generator and \
                sched.get('_class_name') == 'DPMSolverMultistepScheduler':
            generator['scheduler_config'] = {
                k: v for k, v in sched.items() if k in (
                    'flow_shift', 'solver_order', 'algorithm_type',
                    'final_sigmas_type', 'use_flow_sigmas',
                    'prediction_type', 'num_train_timesteps')}
        with parameters_on_meta() if has_weights else \
                contextlib.nullcontext():
            internvl = InternVLForConditionalGeneration(ivl_config)
            sana = SanaTransformer2DModel(**sana_config)
            dcae = AutoencoderDC(**dcae_config)
            self.connector = Connector(self.connector_config,
                                       attn_implementation)
            self.projector = nn.Linear(width, sana.config.caption_channels)
            self.meta_queries = MetaQueries(num_queries, width)
        self.tokenizer = TOKENIZERS.build(
            tokenizer if tokenizer is not None else
            dict(type='HFTokenizer', path=str(self.paths['internvl'])))
        self.generator = build_component(GENERATORS, generator)
        # The Hugging Face model is kept for export but not registered: its
        # modules are, once, as vision / llm / lm_head.
        self.__dict__['hf_model'] = internvl
        inner = internvl.model
        self.vision = nn.ModuleDict(dict(
            vision_tower=inner.vision_tower,
            multi_modal_projector=inner.multi_modal_projector))
        self.llm, self.lm_head = inner.language_model, internvl.lm_head
        self.transformer = sana
        self.gen_tokenizer = build_component(ENCODERS, gen_tokenizer,
                                             vae=dcae)
        if has_weights:
            self._load()
        self.to(self.weights_dtype)
        self.register_buffer('pixel_mean', torch.tensor(IMAGENET_MEAN).view(
            1, 3, 1, 1), persistent=False)
        self.register_buffer('pixel_std', torch.tensor(IMAGENET_STD).view(
            1, 3, 1, 1), persistent=False)
        self.ids = self._special_ids()
        if frozen is None:
            frozen = tuple(p for p in DEFAULT_FROZEN
                           if not (lora is not None and p == self.lora_part))
        self.setup_training(frozen, trainable_dtype, lora,
                            gradient_checkpointing, compile_layers,
                            ce_chunk_size)

    # weights --------------------------------------------------------------
    def _openuni_modules(self):
        """OpenUni's checkpoint prefixes -> our modules."""
        return dict(connector=self.connector.encoder,
                    projector=self.projector, transformer=self.transformer)

    def _load(self):
        from diffusers import AutoencoderDC, SanaTransformer2DModel
        from transformers import InternVLForConditionalGeneration
        paths = self.paths
        loaded = InternVLForConditionalGeneration.from_pretrained(
            paths['internvl'], local_files_only=True,
            dtype=self.weights_dtype)
        self.hf_model.load_state_dict(loaded.state_dict(), strict=True,
                                      assign=True)
        self._relink()
        dcae = AutoencoderDC.from_pretrained(dcae_folder(paths['dcae']),
                                             local_files_only=True)
        self.gen_tokenizer.vae.load_state_dict(dcae.state_dict(),
                                               strict=True, assign=True)
        sana = SanaTransformer2DModel.from_pretrained(
            sana_folder(paths['sana']), local_files_only=True)
        self.transformer.load_state_dict(sana.state_dict(), strict=True,
                                         assign=True)
        parts = read_checkpoint(paths['checkpoint'])
        queries = parts.pop('meta_queries')
        if '' not in queries:
            raise ValueError(f"OpenUni checkpoint '{paths['checkpoint']}' "
                             'has no meta_queries')
        with torch.no_grad():
            if queries[''].shape != self.meta_queries.queries.shape:
                raise ValueError(
                    f'meta_queries of shape {tuple(queries[""].shape)} do '
                    'not fit num_queries x LLM width '
                    f'{tuple(self.meta_queries.queries.shape)}')
            self.meta_queries.queries = nn.Parameter(queries[''].clone())
        for prefix, module in self._openuni_modules().items():
            if prefix == 'transformer' and not parts[prefix]:
                continue  # SANA as in its folder
            missing, unexpected = module.load_state_dict(
                parts[prefix], strict=False, assign=True)
            if missing or unexpected:
                raise ValueError(
                    f"OpenUni checkpoint '{paths['checkpoint']}' does not "
                    f'fit {prefix}: missing {missing[:8]}, unexpected '
                    f'{unexpected[:8]}')
        self._relink()

    def _relink(self):
        inner = self.hf_model.model
        self.vision['vision_tower'] = inner.vision_tower
        self.vision['multi_modal_projector'] = inner.multi_modal_projector
        self.llm, self.lm_head = inner.language_model, self.hf_model.lm_head

    @staticmethod
    def validate_config(cfg):
        """Fail before anything is written if a weights part is missing."""
        if cfg.get('pretrained') is not None or cfg.get('weights'):
            check_openuni_weights(resolve_paths(cfg.get('pretrained'),
                                                cfg.get('weights')))

    @staticmethod
    def weightless_config(cfg):
        """``cfg`` rewritten to build the same architecture without weights
        (the sizing tools): each part's folder config where the folder is
        there, else the published architecture of ``variant``; the demo
        tokenizer stands in for a missing one."""
        cfg = copy.deepcopy(dict(cfg))
        pretrained, weights = cfg.pop('pretrained', None), cfg.pop('weights',
                                                                   None)
        if pretrained is None and not weights:
            return cfg
        arch = copy.deepcopy(OPENUNI_ARCHITECTURES[cfg.get('variant', 'b')])
        paths = resolve_paths(pretrained, weights)
        folders = dict(internvl=paths['internvl'],
                       sana=paths['sana'] and sana_folder(paths['sana']),
                       dcae=paths['dcae'] and dcae_folder(paths['dcae']))
        for name, folder in folders.items():
            file = folder and Path(folder) / 'config.json'
            if file and file.is_file():
                arch[name] = {k: v for k, v in json.loads(
                    file.read_text()).items() if not k.startswith('_')}
        cfg.setdefault('connector', read_openuni_config(pretrained).get(
            'connector'))
        cfg['config'] = arch
        if cfg.get('tokenizer') is None:
            cfg['tokenizer'] = dict(type='InternVLDemoTokenizer')
        return cfg

    def parts(self):
        return dict(vision=self.vision, llm=self.llm, lm_head=self.lm_head,
                    meta_queries=self.meta_queries, connector=self.connector,
                    projector=self.projector, transformer=self.transformer,
                    vae=self.gen_tokenizer.vae)

    def blocks(self):
        return super().blocks() + list(self.transformer.transformer_blocks)

    def sampling_settings(self):
        return dict(super().sampling_settings(), image_size=self.image_size,
                    num_queries=self.num_queries,
                    prompt_template=self.prompt_template,
                    null_prompt=NULL_PROMPT)

    def _special_ids(self):
        return special_token_ids(self.tokenizer, SPECIAL_TOKENS,
                                 self.llm.config.vocab_size, 'InternVL')

    # prompts ----------------------------------------------------------------
    def _text(self, text):
        return self.tokenizer(text, add_special_tokens=False)['input_ids']

    def _rows(self, rows, image_embeds=None, labels=None):
        return token_condition(rows, self.llm.get_input_embeddings(),
                               self.ids['<|endoftext|>'], image_embeds,
                               labels)
    def _image_block(self, count):
        return self._text(USER + '<img>') + [None] * count + \
            self._text('</img>')

    def image_condition(self, und_embeds, instructions):
        """``<|im_start|>user\\n<img>[N]</img>\\n{instruction}<|im_end|>\\n
        <|im_start|>assistant\\n<img>``; the generic (None) instruction is
        "Generate an image."."""
        head = self._image_block(und_embeds.shape[1])
        rows = [head + self._text(
            '\n' + (NULL_PROMPT if text is None else text) + ASSISTANT +
            '<img>') for text in instructions]
        return self._rows(rows, und_embeds)

    def text_condition(self, prompts):
        """``<|im_start|>user\\n{prompt_template(prompt)}<|im_end|>\\n
        <|im_start|>assistant\\n<img>``; the null (None) prompt is
        "Generate an image.", OpenUni's classifier-free guidance prompt."""
        rows = [self._text(USER + (
            NULL_PROMPT if text is None else self.prompt_template.format(text))
            + ASSISTANT + '<img>') for text in prompts]
        return self._rows(rows)

    def conversation_tokens(self, turns, num_image_tokens):
        """InternVL's chat format of an image conversation; labels mark the
        answers and their ``<|im_end|>``."""
        ids = self._image_block(num_image_tokens)
        labels = [-100] * len(ids)
        for i, (question, answer) in enumerate(turns):
            prompt = self._text(('\n' if i == 0 else '\n' + USER) +
                                f'{question}{ASSISTANT}')
            reply = self._text(answer + '<|im_end|>')
            ids += prompt + reply
            labels += [-100] * len(prompt) + reply
        if len(ids) > self.max_length:
            ids, labels = ids[:self.max_length], labels[:self.max_length]
        return ids, labels

    # the UMM interface ------------------------------------------------------
    def understanding_features(self, und_pixels):
        """InternViT + pixel shuffle + ``mlp1`` at ``und_size``: ``[B, 256,
        D]`` (a frozen encoder's output, what a feature cache stores)."""
        x = (und_pixels.float() + 1) / 2
        x = (x - self.pixel_mean.to(x)) / self.pixel_std.to(x)
        if tuple(x.shape[-2:]) != (self.und_size, self.und_size):
            x = torch.nn.functional.interpolate(
                x, size=(self.und_size, self.und_size), mode='bilinear',
                align_corners=False)
        dtype = next(self.vision.parameters()).dtype
        context = torch.no_grad() if self.is_frozen('vision') else \
            contextlib.nullcontext()
        with context:
            out = self.hf_model.model.get_image_features(
                pixel_values=x.to(dtype),
                vision_feature_layer=self.hf_model.config.vision_feature_layer,
                vision_feature_select_strategy=self.hf_model.config.
                vision_feature_select_strategy)
        return out.pooler_output if not torch.is_tensor(out) else out

    def encode_understanding(self, und_pixels=None, und_features=None):
        self.require_one('encode_understanding', und_pixels=und_pixels,
                         und_features=und_features)
        if und_features is not None:
            return und_features.to(self.llm.get_input_embeddings().weight)
        return self.understanding_features(und_pixels)

    def generation_targets(self, gen_pixels):
        if not self.is_frozen('vae'):
            raise ValueError("latents can only be cached while 'vae' is "
                             'frozen')
        return self.gen_tokenizer.encode(gen_pixels)

    def prompt_states(self, condition):
        """The meta-queries after ``condition`` through the LLM ->
        connector -> projector: SANA's ``encoder_hidden_states``."""
        queries = self.meta_queries(len(condition))
        hidden = run_backbone(self.llm, condition, queries,
                              use_cache=False).last_hidden_state
        hidden = hidden[:, -queries.shape[1]:]
        dtype = self.projector.weight.dtype
        return self.projector(self.connector(hidden.to(dtype)))

    def _denoiser(self, states):
        dtype = next(self.transformer.parameters()).dtype

        def denoiser(x_t, timesteps):
            return self.transformer(
                hidden_states=x_t.to(dtype),
                encoder_hidden_states=states.to(dtype),
                timestep=timesteps.to(dtype), return_dict=False)[0]

        return denoiser

    def generation_loss(self, condition, gen_pixels=None, gen_targets=None,
                        draws=None):
        self.check_generation_inputs(gen_pixels, gen_targets, draws)
        latents = self.gen_tokenizer.encode(gen_pixels) \
            if gen_targets is None else gen_targets.float()
        states = self.prompt_states(condition)
        return self.generator.loss(latents, self._denoiser(states), draws)

    # Image-to-text rows are chat rows, as the prompts'.
    answer_condition = _rows

    @torch.no_grad()
    def generate(self, condition, generator=None, **sampling):
        scale = sampling.get('guidance_scale', self.generator.guidance_scale)
        rows = Condition.cat([condition, self.null_condition(condition)]) \
            if scale != 1 else condition
        states = self.prompt_states(rows)
        h, w = self.gen_tokenizer.grid(self.image_size)
        shape = (len(condition), self.gen_tokenizer.latent_channels, h, w)
        device = generator.device if generator is not None else 'cpu'
        noise = torch.randn(shape, generator=generator, device=device)
        latents = self.generator.sample(
            shape, self._denoiser(states), noise=noise.to(states.device),
            **sampling)
        return self.gen_tokenizer.decode(latents)

    # export ---------------------------------------------------------------
    def openuni_state(self):
        """The OpenUni checkpoint's tensors: meta-queries, connector,
        projector and SANA, in ``weights_dtype``."""
        state = {'meta_queries': self.meta_queries.queries.detach()}
        for prefix, module in self._openuni_modules().items():
            state.update({f'{prefix}.{k}': v for k, v in
                          module.state_dict().items()})
        return {k: (v.to(self.weights_dtype) if v.is_floating_point() else
                    v).contiguous() for k, v in state.items()}

    def save_pretrained(self, out_dir):
        """Write the four parts under their default names: the OpenUni
        checkpoint (``openuni.safetensors`` and ``openuni.pth``), the
        InternVL -hf folder (with merged LoRA, if any), the SANA and DC-AE
        diffusers folders, and the connector settings. The folder appears
        complete or not at all."""
        from safetensors.torch import save_file

        def write(tmp):
            state = self.openuni_state()
            save_file(state, tmp / DEFAULT_NAMES['checkpoint'])
            torch.save(state, tmp / 'openuni.pth')
            ivl = self.hf_model
            if self.lora:
                merged = merged_state_dict(self.llm)
                ivl_state = {k: v for k, v in ivl.state_dict().items()
                             if not k.startswith('model.language_model.')}
                ivl_state.update({f'model.language_model.{k}': v
                                  for k, v in merged.items()})
            else:
                ivl_state = ivl.state_dict()
            ivl_state = {k: v.to(self.weights_dtype)
                         if v.is_floating_point() else v
                         for k, v in ivl_state.items()}
            ivl.config.dtype = self.weights_dtype
            ivl.save_pretrained(tmp / DEFAULT_NAMES['internvl'],
                                state_dict=ivl_state)
            self.tokenizer.save_pretrained(tmp / DEFAULT_NAMES['internvl'])
            self.transformer.save_pretrained(tmp / DEFAULT_NAMES['sana'])
            self.gen_tokenizer.vae.save_pretrained(tmp / DEFAULT_NAMES['dcae'])
            (tmp / CONFIG_NAME).write_text(json.dumps(dict(
                variant=self.variant, num_queries=self.num_queries,
                connector=self.connector_config), indent=2))

        return write_folder(Path(out_dir), write)
