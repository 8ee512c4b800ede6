"""BAGEL (Deng et al. 2025, ByteDance-Seed/Bagel) as a UMM: a Qwen2
Mixture-of-Transformers (MoT) that reads images through SigLIP and writes
them by rectified flow over FLUX VAE latents.

Written for this project from the paper and the published layout of
``BAGEL-7B-MoT`` (``ByteDance-Seed/Bagel``: ``modeling/bagel/bagel.py``,
``qwen2_navit.py``, ``siglip_navit.py``, ``modeling_utils.py``,
``data/dataset_base.py``), over transformers' Qwen2 and SigLIP blocks and
diffusers' autoencoder:

* the **MoT decoder** (:class:`BagelLanguageModel`): every layer holds two
  expert weight sets, understanding (``q_proj``, ``mlp``, ...) and
  generation (``q_proj_moe_gen``, ``mlp_moe_gen``, ...); each token goes
  through its own expert's projections, norms and MLP, and all tokens meet
  in one joint attention. Which expert a token uses is a per-token mask:
  VAE latent tokens are generation tokens, everything else (text, ViT
  tokens, the image start/end markers) understanding tokens. With
  ``freeze_und`` the understanding tokens' queries, keys, values and hidden
  states are detached in every layer, as upstream's ``--freeze_und`` does,
  so the understanding expert gets no gradient;
* **packed splits** (``data/dataset_base.py``): a ViT split
  ``<|vision_start|> [N ViT tokens] <|vision_end|>`` with full attention
  and one rotary position, a causal text split ``<|im_start|> text
  <|im_end|>``, and a VAE split ``<|vision_start|> [latent tokens]
  <|vision_end|>`` with full attention within itself and one rotary
  position. They travel in a :class:`~reca_toolkit.models.umm.base.
  Condition` (``positions``, ``blocks``); the prompt ends with the VAE
  split's ``<|vision_start|>``, so generation continues inside its block;
* **understanding**: transformers ``SiglipVisionModel`` cut to
  ``vit_select_layer`` (upstream keeps layers up to the second-to-last and
  its post-layernorm), BAGEL's MLP connector and fixed 2-D sin-cos position
  embeddings on a ``vit_max_num_patch_per_side`` grid;
* **generation**: the FLUX VAE through
  :class:`~reca_toolkit.models.encoders.VAETokenizer` (scale 0.3611, shift
  0.1159, 2 x 2 latent patches in BAGEL's position-major order), ``vae2llm``
  + timestep embedder + latent position embeddings in, ``llm2vae`` out,
  trained by :class:`~reca_toolkit.models.generators.FlowMatchingGenerator`
  (logit-normal ``t``, shift 1, target ``noise - x0``).

The RecA plan (RecA repository ``BAGEL/data/t2i_dataset.py``): ViT split
(never dropped) -> text split (the instruction, dropped with p 0.1: the
family's generic instruction is *no* text split) -> VAE split (the loss).
"""
import contextlib
import copy
import random
import tempfile
from pathlib import Path

import torch
from torch import nn

from reca_toolkit.models.bagel_weights import (FLUX_VAE_CONFIG,
                                               check_bagel_folder,
                                               load_bagel_weights,
                                               read_configs,
                                               write_bagel_folder)
from reca_toolkit.models.builder import build_component
from reca_toolkit.models.lora import merged_state_dict
from reca_toolkit.models.tokenizers import demo_tokenizer
from reca_toolkit.models.umm.base import (BaseUMM, Condition, attention_bias,
                                          special_token_ids, token_condition)
from reca_toolkit.models.weightless import parameters_on_meta
from reca_toolkit.registry import ENCODERS, GENERATORS, TOKENIZERS, UMMS

BAGEL_SPECIAL_TOKENS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>',
                        '<|vision_start|>', '<|vision_end|>')


@TOKENIZERS.register_module(name='BagelDemoTokenizer')
def bagel_demo_tokenizer(vocab_size=1024):
    """A byte-level BPE with BAGEL's special tokens (ids 0-4), trained in
    code, for tiny models."""
    return demo_tokenizer(BAGEL_SPECIAL_TOKENS, ['Generate an image: '],
                          vocab_size, eos_token='<|im_end|>',
                          pad_token='<|endoftext|>')


# The Mixture-of-Transformers decoder -----------------------------------------
def route(x, gen, und_fn, gen_fn, detach_und=False):
    """``und_fn`` on the understanding tokens of ``x`` (``[B, L, ...]``),
    ``gen_fn`` on the generation tokens (``gen``: ``[B, L]`` bool, or None
    for none), each on its own rows only; ``detach_und`` cuts the gradient
    of the understanding outputs."""
    if gen is None or not bool(gen.any()):
        out = und_fn(x)
        return out.detach() if detach_und else out
    und_out = und_fn(x[~gen])
    if detach_und:
        und_out = und_out.detach()
    gen_out = gen_fn(x[gen])
    out = und_out.new_empty(*gen.shape, *und_out.shape[1:])
    out[~gen] = und_out
    out[gen] = gen_out.to(out.dtype)
    return out


class MoTAttention(nn.Module):
    """Joint attention of both experts: each token's q/k/v/o projections
    and QK-norm are its expert's; rotary positions and the attention itself
    are shared. Names as upstream's ``PackedAttentionMoT``."""

    def __init__(self, config, layer_idx):
        super().__init__()
        from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
        self.config, self.layer_idx = config, layer_idx
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.num_key_value_groups = (config.num_attention_heads
                                     // config.num_key_value_heads)
        self.scaling = self.head_dim ** -0.5
        self.is_causal = False  # the mask says everything
        width = config.hidden_size
        heads, kv_heads = (config.num_attention_heads,
                           config.num_key_value_heads)
        for suffix in ('', '_moe_gen'):
            setattr(self, f'q_proj{suffix}',
                    nn.Linear(width, heads * self.head_dim, bias=True))
            setattr(self, f'k_proj{suffix}',
                    nn.Linear(width, kv_heads * self.head_dim, bias=True))
            setattr(self, f'v_proj{suffix}',
                    nn.Linear(width, kv_heads * self.head_dim, bias=True))
            setattr(self, f'o_proj{suffix}',
                    nn.Linear(heads * self.head_dim, width, bias=False))
            for name in ('q_norm', 'k_norm'):
                setattr(self, f'{name}{suffix}',
                        Qwen2RMSNorm(self.head_dim, eps=config.rms_norm_eps)
                        if getattr(config, 'qk_norm', True) else
                        nn.Identity())

    def forward(self, hidden, position_embeddings, attention_mask, gen,
                freeze_und=False):
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.qwen2.modeling_qwen2 import (
            apply_rotary_pos_emb, eager_attention_forward)
        batch, length = hidden.shape[:2]
        heads = (batch, length, -1, self.head_dim)
        q = route(hidden, gen, self.q_proj, self.q_proj_moe_gen).view(heads)
        k = route(hidden, gen, self.k_proj, self.k_proj_moe_gen).view(heads)
        v = route(hidden, gen, self.v_proj, self.v_proj_moe_gen,
                  freeze_und).view(heads)
        q = route(q, gen, self.q_norm, self.q_norm_moe_gen, freeze_und)
        k = route(k, gen, self.k_norm, self.k_norm_moe_gen, freeze_und)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward)
        out = attend(self, q, k, v, attention_mask.to(q.dtype), dropout=0.0,
                     scaling=self.scaling)[0]
        return route(out.reshape(batch, length, -1), gen, self.o_proj,
                     self.o_proj_moe_gen, freeze_und)


def _decoder_layer_class():
    from transformers.modeling_layers import GradientCheckpointingLayer
    from transformers.models.qwen2.modeling_qwen2 import (Qwen2MLP,
                                                          Qwen2RMSNorm)

    class MoTDecoderLayer(GradientCheckpointingLayer):
        """One MoT layer: pre-norm attention and MLP, each token through
        its expert's norms and MLP. Names as upstream's
        ``Qwen2MoTDecoderLayer``."""

        def __init__(self, config, layer_idx):
            super().__init__()
            self.self_attn = MoTAttention(config, layer_idx)
            self.mlp, self.mlp_moe_gen = Qwen2MLP(config), Qwen2MLP(config)
            for name in ('input_layernorm', 'post_attention_layernorm'):
                for suffix in ('', '_moe_gen'):
                    setattr(self, name + suffix, Qwen2RMSNorm(
                        config.hidden_size, eps=config.rms_norm_eps))

        def forward(self, hidden, attention_mask=None,
                    position_embeddings=None, gen=None, freeze_und=False,
                    **unused):
            normed = route(hidden, gen, self.input_layernorm,
                           self.input_layernorm_moe_gen)
            hidden = hidden + self.self_attn(
                normed, position_embeddings, attention_mask, gen, freeze_und)
            return hidden + route(
                hidden, gen,
                lambda x: self.mlp(self.post_attention_layernorm(x)),
                lambda x: self.mlp_moe_gen(
                    self.post_attention_layernorm_moe_gen(x)),
                freeze_und)

    return MoTDecoderLayer


def _language_model_classes():
    """``(BagelMoTModel, BagelLanguageModel)``, built on transformers'
    Qwen2 pre-trained model base (weight init, checkpointing switch)."""
    from transformers.modeling_outputs import BaseModelOutput
    from transformers.models.qwen2.modeling_qwen2 import (
        Qwen2PreTrainedModel, Qwen2RMSNorm, Qwen2RotaryEmbedding)
    layer_class = _decoder_layer_class()

    class BagelMoTModel(Qwen2PreTrainedModel):
        """The MoT decoder: ``embed_tokens``, the layers, ``norm`` for
        understanding and ``norm_moe_gen`` for generation tokens.

        ``forward(inputs_embeds, attention_mask, position_ids, gen_mask)``:
        ``attention_mask`` is a ``[B, 1, L, L]`` additive mask
        (:func:`~reca_toolkit.models.umm.base.attention_bias`) or a
        ``[B, L]`` padding mask (then causal); ``gen_mask`` ``[B, L]`` marks
        the generation tokens (None: all understanding).
        """
        _no_split_modules = [layer_class.__name__]
        _can_record_outputs = {}

        def __init__(self, config, freeze_und=False):
            super().__init__(config)
            self.freeze_und = freeze_und
            self.embed_tokens = nn.Embedding(config.vocab_size,
                                             config.hidden_size,
                                             config.pad_token_id)
            self.layers = nn.ModuleList(
                layer_class(config, i)
                for i in range(config.num_hidden_layers))
            self.norm = Qwen2RMSNorm(config.hidden_size,
                                     eps=config.rms_norm_eps)
            self.norm_moe_gen = Qwen2RMSNorm(config.hidden_size,
                                             eps=config.rms_norm_eps)
            self.rotary_emb = Qwen2RotaryEmbedding(config=config)
            self.gradient_checkpointing = False
            self.post_init()

        def get_input_embeddings(self):
            return self.embed_tokens

        def set_input_embeddings(self, value):
            self.embed_tokens = value

        def forward(self, inputs_embeds, attention_mask, position_ids,
                    gen_mask=None, **unused):
            if attention_mask.ndim == 2:
                attention_mask = attention_bias(
                    attention_mask, torch.zeros_like(attention_mask),
                    inputs_embeds.dtype)
            gen = None if gen_mask is None else gen_mask.bool()
            hidden = inputs_embeds
            if self.freeze_und:
                hidden = route(hidden, gen, torch.Tensor.detach,
                               lambda x: x)
            position_embeddings = self.rotary_emb(hidden, position_ids)
            for layer in self.layers:
                hidden = layer(hidden, attention_mask=attention_mask,
                               position_embeddings=position_embeddings,
                               gen=gen, freeze_und=self.freeze_und)
            hidden = route(hidden, gen, self.norm, self.norm_moe_gen,
                           self.freeze_und)
            return BaseModelOutput(last_hidden_state=hidden)

    class BagelLanguageModel(Qwen2PreTrainedModel):
        """The MoT decoder (``model``) and its ``lm_head``: upstream's
        ``Qwen2ForCausalLM`` key layout (``language_model.model.*``,
        ``language_model.lm_head.weight``)."""
        _tied_weights_keys = {'lm_head.weight': 'model.embed_tokens.weight'}
        _no_split_modules = [layer_class.__name__]
        _can_record_outputs = {}

        def __init__(self, config, freeze_und=False):
            super().__init__(config)
            self.model = BagelMoTModel(config, freeze_und)
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size,
                                     bias=False)
            self.post_init()

        def get_input_embeddings(self):
            return self.model.embed_tokens

        def get_output_embeddings(self):
            return self.lm_head

    return BagelMoTModel, BagelLanguageModel


def build_language_model(config, freeze_und=False):
    """BAGEL's MoT language model for a ``Qwen2Config``."""
    return _language_model_classes()[1](config, freeze_und)


# BAGEL's small modules -------------------------------------------------------
class SinCosPositions(nn.Module):
    """Fixed 2-D sin-cos position embeddings on a ``side x side`` grid,
    indexed by flattened ids ``row * side + col`` (upstream's
    ``PositionEmbedding``; never trained, so not saved: upstream's loader
    drops its ``pos_embed`` keys too)."""

    def __init__(self, side, width):
        super().__init__()
        from diffusers.models.embeddings import get_2d_sincos_pos_embed
        self.side = side
        self.register_buffer('pos_embed', get_2d_sincos_pos_embed(
            width, side, base_size=side, output_type='pt').float(),
            persistent=False)

    def ids(self, height, width):
        """Flattened ids of an ``height x width`` grid, row by row, at the
        top left of the ``side`` grid (upstream's "extrapolate" mode)."""
        if height > self.side or width > self.side:
            raise ValueError(f'a {height}x{width} grid exceeds the '
                             f'{self.side}x{self.side} position grid')
        rows = torch.arange(height, device=self.pos_embed.device)
        cols = torch.arange(width, device=self.pos_embed.device)
        return (rows[:, None] * self.side + cols).flatten()

    def forward(self, height, width):
        return self.pos_embed[self.ids(height, width)]


class TimestepEmbedder(nn.Module):
    """DiT's timestep embedder (``mlp.0``, ``mlp.2`` as upstream's): 256
    sinusoidal frequencies, cosines first, then a SiLU MLP; ``t`` in
    [0, 1] as BAGEL embeds it."""

    def __init__(self, width, frequencies=256):
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, width), nn.SiLU(),
                                 nn.Linear(width, width))

    def forward(self, t):
        from diffusers.models.embeddings import get_timestep_embedding
        freq = get_timestep_embedding(t.float(), self.frequencies,
                                      flip_sin_to_cos=True,
                                      downscale_freq_shift=0)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class MLPConnector(nn.Module):
    """ViT width -> LLM width: ``fc1``, activation, ``fc2`` (upstream's
    ``MLPconnector``)."""

    def __init__(self, width_in, width_out, activation):
        super().__init__()
        from transformers.activations import ACT2FN
        self.fc1 = nn.Linear(width_in, width_out)
        self.act = ACT2FN[activation]
        self.fc2 = nn.Linear(width_out, width_out)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# Packed splits ---------------------------------------------------------------
def split_rows(rows):
    """Rows of splits -> per row ``(tokens, positions, blocks)``.

    A split is ``(mode, tokens)``: 'full' (every token at one rotary
    position, full attention within the split, upstream's "full" and
    "noise"), 'latent' (the same, its inner tokens generation tokens: a
    clean VAE split of a source image), 'causal' (consecutive positions,
    causal), or 'open': a full split whose tokens generation continues (the
    VAE split's ``<|vision_start|>``; its position is not passed on).
    Tokens are ids or None where image embeddings go. Also returns, per
    row, which tokens are generation tokens.
    """
    out = []
    for splits in rows:
        tokens, positions, blocks, gen, rope = [], [], [], [], 0
        for index, (mode, split) in enumerate(splits, start=1):
            tokens += split
            inner = mode == 'latent'
            gen += [False] + [inner] * (len(split) - 2) + [False] \
                if len(split) > 1 else [False] * len(split)
            if mode == 'causal':
                positions += range(rope, rope + len(split))
                blocks += [0] * len(split)
                rope += len(split)
            else:
                positions += [rope] * len(split)
                blocks += [index] * len(split)
                rope += mode != 'open'
        out.append((tokens, positions, blocks, gen))
    return out


def left_pad(values, length):
    rows = torch.zeros(len(values), length, dtype=torch.long)
    for i, row in enumerate(values):
        if row:
            rows[i, length - len(row):] = torch.tensor(row)
    return rows


def extend_condition(condition, tail, tail_gen):
    """``condition`` followed by ``tail`` (``[B, T, D]``) inside the
    condition's last block, at its last rotary position (the VAE split
    continuing its ``<|vision_start|>``). Returns ``(embeds, mask,
    positions, blocks, gen)`` of the whole sequence; ``tail_gen`` ``[T]``
    marks the tail's generation tokens."""
    count = tail.shape[1]
    mask = torch.cat([condition.mask,
                      condition.mask.new_ones(len(condition), count)], 1)
    gen = torch.cat([condition.extras['gen'].bool(),
                     tail_gen.to(mask.device).expand(len(condition), -1)], 1)
    positions = condition.position_ids
    blocks = condition.blocks
    positions = torch.cat([positions,
                           positions[:, -1:].expand(-1, count)], 1)
    blocks = torch.cat([blocks, blocks[:, -1:].expand(-1, count)], 1)
    embeds = torch.cat([condition.embeds, tail.to(condition.embeds.dtype)],
                       1)
    return embeds, mask, positions, blocks, gen


@UMMS.register_module()
class BagelUMM(BaseUMM):
    """BAGEL behind the UMM interface.

    Args:
        pretrained: local BAGEL-7B-MoT folder
            (:mod:`~reca_toolkit.models.bagel_weights`).
        llm: ``Qwen2Config`` arguments for a random model instead (tests,
            demos, sizing); ``vit`` and ``vae`` then describe the rest.
        vit: ``SiglipVisionConfig`` arguments of the full SigLIP (as in
            ``vit_config.json``); ``vit_select_layer`` cuts it.
        vae: ``AutoencoderKL`` arguments; the FLUX VAE by default.
        tokenizer: a ``TOKENIZERS`` config; by default the folder's.
        frozen: parts kept frozen (:meth:`parts`); the authors freeze the
            VAE, the ViT and the connector (RecA repository
            ``BAGEL/train/pretrain_unified_navit.py``).
        freeze_und: the understanding expert (and ``embed_tokens``,
            ``norm``, ``lm_head``) stays frozen, its token activations
            detached in every layer, as upstream's ``--freeze_und``; only
            the generation expert of ``language_model`` trains.
        flow: the flow-matching generator config (training: logit-normal
            ``t``, shift 1; sampling as the authors' GenEval script: Euler
            over ``linspace(1, 0, 50)`` shifted by 3 (49 steps), text CFG 4
            on ``(0, 1]``, global renorm with minimum 0).
        gen_tokenizer: the VAE tokenizer config; it samples the VAE
            posterior, as upstream's FLUX encoder does
            (``modeling/autoencoder.py`` ``DiagonalGaussian(sample=True)``),
            from per-sample seeds; ``sample_posterior=False`` takes its
            mode (and allows a latent cache).
        image_size: generated (and reconstructed) image size.
        vit_select_layer: the SigLIP layer kept (-2: all but the last).
        vit_max_num_patch_per_side, max_latent_size: the position grids of
            ViT patches and latent tokens (70 and 64 for BAGEL-7B-MoT).
        connector_act: the connector's activation.
        weights_dtype, trainable_dtype, attn_implementation,
        gradient_checkpointing, compile_layers, lora, ce_chunk_size: as for
            every UMM (:meth:`BaseUMM.setup_training`).
        max_length: image-to-text sequences are cut to this many tokens.
    """
    lora_part = 'language_model'

    def __init__(self,
                 pretrained=None,
                 llm=None,
                 vit=None,
                 vae=FLUX_VAE_CONFIG,
                 tokenizer=None,
                 frozen=('vae', 'vit', 'connector'),
                 freeze_und=True,
                 flow=dict(type='FlowMatchingGenerator',
                           timestep_sampling='logit_normal', shift=1.0,
                           scheduler='euler', sampling_shift=3.0,
                           sigma_grid='uniform', num_inference_steps=49,
                           guidance_scale=4.0, cfg_interval=(0.0, 1.0),
                           cfg_renorm='global', cfg_renorm_min=0.0),
                 gen_tokenizer=dict(type='VAETokenizer',
                                    scaling_factor=0.3611,
                                    shift_factor=0.1159,
                                    sample_posterior=True, patch_size=2,
                                    patch_layout='pqc'),
                 image_size=1024,
                 vit_select_layer=-2,
                 vit_max_num_patch_per_side=70,
                 max_latent_size=64,
                 connector_act='gelu_pytorch_tanh',
                 weights_dtype='bfloat16',
                 trainable_dtype='float32',
                 attn_implementation='sdpa',
                 gradient_checkpointing=False,
                 compile_layers=False,
                 lora=None,
                 ce_chunk_size=None,
                 max_length=4096):
        super().__init__()
        if (pretrained is None) == (llm is None):
            raise ValueError('BagelUMM needs exactly one of pretrained= (a '
                             'local folder) or llm= (with vit=: random '
                             'initialisation)')
        from diffusers import AutoencoderKL
        from transformers import (Qwen2Config, SiglipVisionConfig,
                                  SiglipVisionModel)
        self.pretrained = pretrained
        self.weights_dtype = getattr(torch, weights_dtype)
        self.image_size, self.max_length = image_size, max_length
        self.freeze_und = freeze_und
        if pretrained is not None:
            files = check_bagel_folder(pretrained)
            llm_config = Qwen2Config.from_json_file(str(files['llm_config']))
            vit_config = SiglipVisionConfig.from_json_file(
                str(files['vit_config']))
        else:
            if vit is None:
                raise ValueError('BagelUMM(llm=...) needs vit= too')
            llm_config, vit_config = Qwen2Config(**llm), \
                SiglipVisionConfig(**vit)
        self.vit_config = copy.deepcopy(vit_config)  # as vit_config.json
        self.vit_select_layer = vit_select_layer
        vit_config.num_hidden_layers += 1 + vit_select_layer
        vit_config.vision_use_head = False
        llm_config._attn_implementation = attn_implementation
        vit_config._attn_implementation = attn_implementation
        self.vae_config = dict(vae)
        width = llm_config.hidden_size
        with parameters_on_meta() if pretrained else \
                contextlib.nullcontext():
            self.language_model = build_language_model(llm_config,
                                                       freeze_und)
            self.vit = SiglipVisionModel(vit_config)
            self.connector = MLPConnector(vit_config.hidden_size, width,
                                          connector_act)
            self.gen_tokenizer = build_component(
                ENCODERS, gen_tokenizer, vae=AutoencoderKL(**self.vae_config))
            self.vae2llm = nn.Linear(self.gen_tokenizer.token_dim, width)
            self.llm2vae = nn.Linear(width, self.gen_tokenizer.token_dim)
            self.time_embedder = TimestepEmbedder(width)
        # Upstream starts the velocity head at zero (Bagel._init_weights).
        if pretrained is None:
            nn.init.zeros_(self.llm2vae.weight)
            nn.init.zeros_(self.llm2vae.bias)
        self.vit_pos_embed = SinCosPositions(vit_max_num_patch_per_side,
                                             width)
        self.latent_pos_embed = SinCosPositions(max_latent_size, width)
        self.flow = build_component(GENERATORS, flow)
        self.tokenizer = TOKENIZERS.build(
            tokenizer if tokenizer is not None else
            dict(type='HFTokenizer', path=pretrained))
        if pretrained is not None:
            self._load(*load_bagel_weights(pretrained, self.vae_config))
        self.to(self.weights_dtype)
        self.ids = self._special_ids()
        self.setup_training(frozen, trainable_dtype, lora,
                            gradient_checkpointing, compile_layers,
                            ce_chunk_size)

    # weights -----------------------------------------------------------------
    def _bagel_modules(self):
        """Top-level names of upstream's ``ema.safetensors`` -> modules."""
        # transformers 5's SiglipVisionModel has no ``vision_model`` level.
        return {'language_model': self.language_model,
                'vit_model.vision_model': self.vit,
                'connector': self.connector, 'vae2llm': self.vae2llm,
                'llm2vae': self.llm2vae, 'time_embedder': self.time_embedder}

    def _load(self, state, vae_state):
        for prefix, module in self._bagel_modules().items():
            part = {k[len(prefix) + 1:]: v for k, v in state.items()
                    if k.startswith(prefix + '.')}
            missing, unexpected = module.load_state_dict(part, strict=False,
                                                         assign=True)
            if prefix == 'language_model' and \
                    self.language_model.config.tie_word_embeddings:
                self.language_model.tie_weights()
                missing = [k for k in missing if k != 'lm_head.weight']
            if missing or unexpected:
                raise ValueError(
                    f"BAGEL weights in '{self.pretrained}' do not fit "
                    f'{prefix}: missing {missing[:8]}, unexpected '
                    f'{unexpected[:8]}')
        self.gen_tokenizer.vae.load_state_dict(vae_state, strict=True,
                                               assign=True)

    def bagel_state_dict(self):
        """The trainable model under upstream's ``ema.safetensors`` names
        (the ViT patch embedding as upstream's linear layer)."""
        state = {}
        for prefix, module in self._bagel_modules().items():
            part = merged_state_dict(module) if self.lora and \
                prefix == 'language_model' else module.state_dict()
            state.update({f'{prefix}.{k}': v for k, v in part.items()})
        return state

    @staticmethod
    def weightless_config(cfg):
        """``cfg`` rewritten to build the same architecture without weights:
        BAGEL-7B-MoT's published configs when the folder is absent; the
        demo tokenizer stands in for a missing one."""
        cfg = copy.deepcopy(dict(cfg))
        pretrained = cfg.pop('pretrained', None)
        if pretrained is None:
            return cfg
        llm, vit, has_tokenizer = read_configs(pretrained)
        cfg.update(llm=llm, vit=vit)
        if cfg.get('tokenizer') is None:
            cfg['tokenizer'] = dict(type='HFTokenizer', path=pretrained) \
                if has_tokenizer else dict(type='BagelDemoTokenizer')
        return cfg

    @staticmethod
    def validate_config(cfg):
        """Fail before anything is written if the weights folder is bad."""
        if cfg.get('pretrained') is not None:
            check_bagel_folder(cfg['pretrained'])

    def parts(self):
        return dict(language_model=self.language_model, vit=self.vit,
                    connector=self.connector, vae=self.gen_tokenizer.vae,
                    vae2llm=self.vae2llm, llm2vae=self.llm2vae,
                    time_embedder=self.time_embedder)

    def apply_freeze(self, frozen):
        """The parts in ``frozen``; with ``freeze_und`` also upstream's
        ``--freeze_und``: besides the detaching, the understanding weights
        take no gradient and stay in the weights dtype (LoRA adapters a
        user put on them stay trainable)."""
        if self.freeze_und:
            for name, param in self.language_model.named_parameters():
                if '_moe_gen' not in name and '.lora_' not in name:
                    param.requires_grad_(False)
                    param.data = param.data.to(self.weights_dtype)
        super().apply_freeze(frozen)

    def active_parameters(self):
        """An understanding token (text, ViT) uses the embedding table, the
        understanding expert, ``norm`` and ``lm_head``; a latent token the
        generation expert, ``norm_moe_gen``, ``vae2llm``, the timestep
        embedder and ``llm2vae``. The ViT and the VAE are left out: they run
        once per image, not per token."""
        und = gen = 0
        for name, param in self.language_model.named_parameters():
            if '_moe_gen' in name:
                gen += param.numel()
            else:
                und += param.numel()
        gen += sum(p.numel() for module in (self.vae2llm, self.llm2vae,
                                            self.time_embedder)
                   for p in module.parameters())
        return dict(understanding=und, generation=gen)

    @property
    def backbone(self):
        return self.language_model.model

    @property
    def generator(self):
        return self.flow

    def sampling_settings(self):
        return dict(super().sampling_settings(), image_size=self.image_size,
                    image_tokens=self._tokens_per_image())

    def _tokens_per_image(self):
        h, w = self.gen_tokenizer.grid(self.image_size)
        return h * w

    def _special_ids(self):
        ids = special_token_ids(self.tokenizer, BAGEL_SPECIAL_TOKENS,
                                self.language_model.config.vocab_size,
                                'BAGEL')
        return dict(zip(('pad', 'bos', 'eos', 'start', 'end'), ids.values()))

    # packed sequences --------------------------------------------------------
    def _text(self, text):
        return self.tokenizer(text, add_special_tokens=False)['input_ids']

    def _text_split(self, text):
        """Upstream's text split: ``<|im_start|>`` as BOS, text,
        ``<|im_end|>``."""
        return ('causal', [self.ids['bos']] + self._text(text) +
                [self.ids['eos']])

    def _latent_split(self, count):
        return ('latent', [self.ids['start']] + [None] * count +
                [self.ids['end']])

    def _vit_split(self, count):
        return ('full', [self.ids['start']] + [None] * count +
                [self.ids['end']])

    def _condition(self, rows, image_embeds=None, labels=None):
        """Rows of splits -> a left-padded :class:`Condition` with the
        splits' rotary positions and attention blocks."""
        packed = split_rows(rows)
        result = token_condition([p[0] for p in packed],
                                 self.backbone.get_input_embeddings(),
                                 self.ids['pad'], image_embeds, labels)
        condition = result[0] if labels is not None else result
        length = condition.mask.shape[1]
        device = condition.mask.device
        condition.positions = left_pad([p[1] for p in packed],
                                       length).to(device)
        condition.blocks = left_pad([p[2] for p in packed], length).to(device)
        # Which positions are generation tokens (a source image's clean
        # latents when editing), for the MoT's routing.
        condition.extras['gen'] = left_pad([p[3] for p in packed],
                                           length).to(device)
        return result

    def _generation_rows(self, prefixes):
        """Each row's splits, then the open VAE split's
        ``<|vision_start|>``."""
        return [prefix + [('open', [self.ids['start']])]
                for prefix in prefixes]

    def image_condition(self, und_embeds, instructions):
        """ViT split, the instruction's text split (none for a None
        instruction: upstream drops the whole split), the VAE split's
        start."""
        vit = self._vit_split(und_embeds.shape[1])
        return self._condition(self._generation_rows(
            [[vit] + ([] if text is None else [self._text_split(text)])
             for text in instructions]), und_embeds)

    def text_condition(self, prompts):
        """The prompt's text split, then the VAE split's start; the null
        (None) prompt has no text split at all, as upstream's text-free
        guidance branch."""
        return self._condition(self._generation_rows(
            [[] if text is None else [self._text_split(text)]
             for text in prompts]))

    def conversation_tokens(self, turns, num_image_tokens):
        """The ViT split, then a text split per question and per answer;
        labels mark each answer and its ``<|im_end|>`` (upstream's
        ``loss=1`` text splits)."""
        splits = [self._vit_split(num_image_tokens)]
        labels = [-100] * (num_image_tokens + 2)
        for question, answer in turns:
            asked, told = self._text_split(question), self._text_split(answer)
            splits += [asked, told]
            # The state at the answer's <|im_start|> predicts its first
            # token: everything after it is scored.
            labels += [-100] * len(asked[1]) + [-100] + told[1][1:]
        if len(labels) > self.max_length:
            raise ValueError(f'an image-to-text sample of {len(labels)} '
                             f'tokens exceeds max_length={self.max_length}')
        return splits, labels

    # the UMM interface -------------------------------------------------------
    def _vit_grid(self, count):
        side = int(count ** 0.5)
        if side * side != count:
            raise ValueError(f'{count} cached ViT features are not a square '
                             'grid')
        return side, side

    def understanding_features(self, und_pixels):
        """SigLIP up to ``vit_select_layer`` with its post-layernorm, on the
        flattened-id position grid of upstream's packed ViT."""
        embeddings = self.vit.embeddings
        patches = embeddings.patch_embedding(
            und_pixels.to(embeddings.patch_embedding.weight.dtype))
        h, w = patches.shape[-2:]
        side = int(embeddings.num_patches ** 0.5)
        rows, cols = torch.arange(h), torch.arange(w)
        ids = (rows[:, None] * side + cols).flatten().to(patches.device)
        x = patches.flatten(2).transpose(1, 2) + \
            embeddings.position_embedding(ids)
        x = self.vit.encoder(inputs_embeds=x).last_hidden_state
        return self.vit.post_layernorm(x)

    def encode_understanding(self, und_pixels=None, und_features=None):
        self.require_one('encode_understanding', und_pixels=und_pixels,
                         und_features=und_features)
        if und_features is None:
            with torch.no_grad() if self.is_frozen('vit') else \
                    contextlib.nullcontext():
                und_features = self.understanding_features(und_pixels)
            patch = self.vit.config.patch_size
            h, w = (und_pixels.shape[-2] // patch,
                    und_pixels.shape[-1] // patch)
        else:
            h, w = self._vit_grid(und_features.shape[1])
        x = self.connector(und_features.to(self.connector.fc1.weight.dtype))
        return x + self.vit_pos_embed(h, w).to(x.device, x.dtype)

    def generation_targets(self, gen_pixels):
        if not self.is_frozen('vae'):
            raise ValueError("latents can only be cached while 'vae' is "
                             'frozen')
        if self.gen_tokenizer.sample_posterior:
            raise ValueError(
                'cached latents are fixed, but gen_tokenizer.sample_posterior'
                '=True draws new ones every step (upstream); cache with '
                'sample_posterior=False (the posterior mode)')
        return self.gen_tokenizer.encode(gen_pixels)

    def _denoiser(self, condition, grid):
        """``denoiser(x_t, timesteps)`` for the flow generator: the latent
        tokens embedded (``vae2llm`` + timestep + position) and closed by
        ``<|vision_end|>`` after ``condition``, through the MoT; the
        velocity from ``llm2vae`` at the latent positions."""
        count = grid[0] * grid[1]
        start = condition.embeds.shape[1]
        tail_gen = torch.ones(count + 1, dtype=torch.bool)
        tail_gen[-1] = False  # <|vision_end|> is a text token
        end = self.backbone.get_input_embeddings()(
            torch.tensor([self.ids['end']], device=condition.mask.device))

        def denoiser(x_t, timesteps):
            t = timesteps.float() / self.flow.num_train_timesteps
            dtype = self.vae2llm.weight.dtype
            latents = self.vae2llm(x_t.to(dtype)) + \
                self.time_embedder(t)[:, None] + \
                self.latent_pos_embed(*grid).to(x_t.device, dtype)
            tail = torch.cat([latents.to(end.dtype),
                              end.expand(len(x_t), -1, -1)], 1)
            embeds, mask, positions, blocks, gen = extend_condition(
                condition, tail, tail_gen)
            hidden = self.backbone(
                inputs_embeds=embeds,
                attention_mask=attention_bias(mask, blocks, embeds.dtype),
                position_ids=positions, gen_mask=gen).last_hidden_state
            return self.llm2vae(
                hidden[:, start:start + count].to(self.llm2vae.weight.dtype))

        return denoiser

    def _latents(self, pixels=None, latents=None, seeds=()):
        """The target latents; with ``sample_posterior`` (upstream's FLUX
        encoder samples its posterior) each sample's draw comes from a
        generator seeded by its own seed."""
        if latents is not None:
            return latents.float()
        generators = None
        if self.gen_tokenizer.sample_posterior:
            generators = [torch.Generator().manual_seed(
                random.Random(f'posterior:{int(s)}').getrandbits(63))
                for s in seeds]
        return self.gen_tokenizer.encode(pixels, generator=generators)

    def generation_loss(self, condition, gen_pixels=None, gen_targets=None,
                        draws=None):
        self.check_generation_inputs(gen_pixels, gen_targets, draws)
        latents = self._latents(gen_pixels, gen_targets, draws)
        p = self.gen_tokenizer.patch_size
        grid = (latents.shape[-2] // p, latents.shape[-1] // p)
        tokens = self.gen_tokenizer.to_tokens(latents)
        return self.flow.loss(tokens, self._denoiser(condition, grid), draws)

    @property
    def lm_head(self):
        return self.language_model.lm_head

    def question_rows(self, questions, num_image_tokens):
        """The ViT split, the question's text split, and the answer's split
        opened by ``<|im_start|>``, whose state predicts its first token
        (rows of splits, which the base class's cut of token rows does not
        apply to)."""
        vit = self._vit_split(num_image_tokens)
        return [[vit, self._text_split(question),
                 ('causal', [self.ids['bos']])] for question in questions], \
            self.ids['eos']

    answer_condition = _condition

    def generate(self, condition, generator=None, **sampling):
        scale = sampling.get('guidance_scale', self.flow.guidance_scale)
        rows = Condition.cat([condition, self.null_condition(condition)]) \
            if scale != 1 else condition
        grid = self.gen_tokenizer.grid(self.image_size)
        shape = (len(condition), grid[0] * grid[1],
                 self.gen_tokenizer.token_dim)
        tokens = self.flow.sample(shape, self._denoiser(rows, grid),
                                  generator, **sampling)
        return self.gen_tokenizer.decode(
            self.gen_tokenizer.from_tokens(tokens, grid))

    def clean_latent_embeddings(self, source_pixels, generator=None):
        """A source image's VAE split as upstream's editing context holds
        it: its latent tokens at ``t = 0`` (``vae2llm`` + timestep 0 +
        positions); a sampled posterior draws from ``generator``."""
        latents = self.gen_tokenizer.encode(
            source_pixels,
            generator=generator if self.gen_tokenizer.sample_posterior
            else None)
        p = self.gen_tokenizer.patch_size
        grid = (latents.shape[-2] // p, latents.shape[-1] // p)
        tokens = self.gen_tokenizer.to_tokens(latents)
        dtype = self.vae2llm.weight.dtype
        t = tokens.new_zeros(len(tokens))
        return self.vae2llm(tokens.to(dtype)) + \
            self.time_embedder(t)[:, None] + \
            self.latent_pos_embed(*grid).to(tokens.device, dtype)

    def edit_conditions(self, und_pixels, instructions, source_pixels,
                        generator=None):
        """The three editing branches: the source's clean VAE split and ViT
        split (one rotary position each, in that order) then the
        instruction; the same without the instruction; the instruction
        without the image. Each ends with the open VAE split."""
        if source_pixels is None:
            raise ValueError(
                'BAGEL edits from the source image at the generation size '
                'too: pass source_pixels (a dataset pipeline with '
                'ImageViews(und_size=..., gen_size=...))')
        clean = self.clean_latent_embeddings(source_pixels, generator)
        vit = self.encode_understanding(und_pixels)
        latent, image = (self._latent_split(clean.shape[1]),
                         self._vit_split(vit.shape[1]))
        texts = [self._text_split(text) for text in instructions]
        embeds = torch.cat([clean.to(vit.dtype), vit], 1)
        full = self._condition(self._generation_rows(
            [[latent, image, text] for text in texts]), embeds)
        no_text = self._condition(self._generation_rows(
            [[latent, image]] * len(texts)), embeds)
        no_image = self._condition(self._generation_rows(
            [[text] for text in texts]))
        return full, no_text, no_image

    def edit(self, und_pixels, instructions, generator=None,
             source_pixels=None, image_guidance_scale=1.5, **sampling):
        """Upstream's editing (RecA repository
        ``BAGEL/eval/gen/gen_images_mp_imgedit.py``): the source image's
        clean VAE split and ViT split, then the instruction's text split;
        three guidance branches, full / without the text / without the
        image, combined text first (``guidance_scale``, 4) then image
        (``image_guidance_scale``, 1.5), with 'text_channel' renorm.

        ``source_pixels``: the source at the generation size (the VAE
        view); ``und_pixels`` at the ViT's. The edit has the source's shape
        (upstream keeps the source's aspect: ``AspectViews``).
        """
        full, no_text, no_image = self.edit_conditions(
            und_pixels, instructions, source_pixels, generator)
        rows = Condition.cat([full, no_text, no_image])
        scales = (sampling.pop('guidance_scale', self.flow.guidance_scale),
                  image_guidance_scale)
        grid = self.gen_tokenizer.grid(tuple(source_pixels.shape[-2:]))
        shape = (len(full), grid[0] * grid[1], self.gen_tokenizer.token_dim)
        tokens = self.flow.sample(shape, self._denoiser(rows, grid),
                                  generator, guidance_scale=scales,
                                  cfg_renorm='text_channel', **sampling)
        return self.gen_tokenizer.decode(
            self.gen_tokenizer.from_tokens(tokens, grid))

    def save_pretrained(self, out_dir):
        """Write the BAGEL-7B-MoT layout: ``model.safetensors`` (the trained
        weights, what the authors evaluate) and the same weights as
        ``ema.safetensors`` (what BAGEL's loaders read), ``ae.safetensors``,
        ``llm_config.json``, ``vit_config.json`` and the tokenizer; the
        folder appears complete or not at all."""
        state = {k: v.to(self.weights_dtype) if v.is_floating_point() else v
                 for k, v in self.bagel_state_dict().items()}
        vae_state = {k: v.to(self.weights_dtype) for k, v in
                     self.gen_tokenizer.vae.state_dict().items()}
        with tempfile.TemporaryDirectory() as tokenizer_dir:
            if self.pretrained is None:
                self.tokenizer.save_pretrained(tokenizer_dir)
            return write_bagel_folder(
                out_dir, state, vae_state, self.language_model.config,
                self.vit_config, Path(self.pretrained or tokenizer_dir))
