"""BAGEL's released weights: folder layout, key names, safe loading.

``ByteDance-Seed/BAGEL-7B-MoT`` is one folder::

    FOLDER/ema.safetensors     the Bagel module: language_model.* (Qwen2
                               MoT + lm_head), vit_model.* (SigLIP, its
                               patch embedding a linear layer), connector.*,
                               vae2llm.*, llm2vae.*, time_embedder.*,
                               latent_pos_embed.*, vit_pos_embed.*
    FOLDER/ae.safetensors      the FLUX VAE (BFL/LDM layout)
    FOLDER/llm_config.json     Qwen2Config (+ BAGEL's qk_norm, layer_module)
    FOLDER/vit_config.json     SiglipVisionConfig of the whole SigLIP
    FOLDER/tokenizer.json, tokenizer_config.json, ...

(the key layout: ByteDance-Seed/Bagel ``modeling/bagel/bagel.py``,
``qwen2_navit.py``, ``siglip_navit.py``; loaders there read
``ema.safetensors``). The RecA release ``sanaka87/BAGEL-RecA``'s
``model_bf16.safetensors`` has the same keys: renamed to
``ema.safetensors`` it is a drop-in. ``model.safetensors`` (the RecA
trainer's non-EMA weights, what the authors evaluate) is read in preference
when present. The fixed sin-cos ``*_pos_embed`` tables are recomputed, as
upstream's loader does (``train/fsdp_utils.py`` pops them).
"""
import json
import shutil
import uuid
from pathlib import Path

from reca_toolkit.models.harmon_weights import (_listing, _plain,
                                                _tokenizer_sources,
                                                check_vae_state,
                                                save_safetensors)

# The FLUX.1 autoencoder (BFL ae.safetensors: ch 128, ch_mult 1,2,4,4,
# 2 res blocks, z 16, no quant convs) as diffusers arguments; latents are
# (z - 0.1159) * 0.3611.
FLUX_VAE_CONFIG = dict(
    in_channels=3, out_channels=3,
    down_block_types=['DownEncoderBlock2D'] * 4,
    up_block_types=['UpDecoderBlock2D'] * 4,
    block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    act_fn='silu', latent_channels=16, norm_num_groups=32, sample_size=1024,
    scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
    use_post_quant_conv=False, mid_block_add_attention=True)

# BAGEL-7B-MoT's llm_config.json (Qwen2.5-7B-Instruct's decoder with QK
# norm) and vit_config.json (SigLIP so400m, patch 14, 980 px): the
# architecture for sizing without the folder.
BAGEL_7B_MOT = dict(
    llm=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
             num_hidden_layers=28, num_attention_heads=28,
             num_key_value_heads=4, max_position_embeddings=32768,
             rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act='silu',
             tie_word_embeddings=False, qk_norm=True),
    vit=dict(hidden_size=1152, intermediate_size=4304,
             num_hidden_layers=27, num_attention_heads=16, patch_size=14,
             image_size=980, num_channels=3, hidden_act='gelu_pytorch_tanh',
             layer_norm_eps=1e-6))

BAGEL_PREFIXES = ('language_model.', 'vit_model.', 'connector.',
                  'vae2llm.', 'llm2vae.', 'time_embedder.')
# Fixed tables upstream stores and its loader drops.
RECOMPUTED_PREFIXES = ('latent_pos_embed.', 'vit_pos_embed.')
PATCH_KEY = 'vit_model.vision_model.embeddings.patch_embedding.weight'
REPO = 'ByteDance-Seed/BAGEL-7B-MoT'


def check_bagel_folder(path):
    """The files of a BAGEL folder. Raises ``FileNotFoundError`` listing
    every missing one with the command that gets it.

    Returns:
        dict of paths: ``weights`` (``model.safetensors`` if present, else
        ``ema.safetensors``), ``vae``, ``llm_config``, ``vit_config``.
    """
    path = Path(path)

    def get(name):
        return f'huggingface-cli download {REPO} {name} --local-dir {path}'

    files, missing = {}, []
    for key, name in (('llm_config', 'llm_config.json'),
                      ('vit_config', 'vit_config.json'),
                      ('vae', 'ae.safetensors')):
        files[key] = path / name
        if not files[key].is_file():
            missing.append(f'{name}: {get(name)}')
    for name in ('model.safetensors', 'ema.safetensors'):
        if (path / name).is_file():
            files['weights'] = path / name
            break
    else:
        missing.append(f'ema.safetensors (or model.safetensors): '
                       f'{get("ema.safetensors")}')
    if not (path / 'tokenizer.json').is_file() and not (
            (path / 'vocab.json').is_file()
            and (path / 'merges.txt').is_file()):
        missing.append(f'tokenizer.json (or vocab.json + merges.txt): '
                       f'{get("tokenizer.json")}')
    if not (path / 'tokenizer_config.json').is_file():
        missing.append(f'tokenizer_config.json: '
                       f'{get("tokenizer_config.json")}')
    if missing:
        where = 'does not exist' if not path.is_dir() else 'is incomplete'
        raise FileNotFoundError(
            f"BAGEL: folder '{path}' {where}; missing:\n"
            + ''.join(f'  - {m}\n' for m in missing)
            + 'Run these on a machine with internet access and copy the '
            'files over: reca_toolkit never downloads.')
    return files


def read_configs(path):
    """``(llm, vit, has_tokenizer)`` of a folder, the published
    BAGEL-7B-MoT configs for the parts it lacks (sizing)."""
    path = Path(path)
    configs = []
    for name, key in (('llm_config.json', 'llm'), ('vit_config.json', 'vit')):
        file = path / name
        configs.append(json.loads(file.read_text()) if file.is_file()
                       else dict(BAGEL_7B_MOT[key]))
    return (*configs, (path / 'tokenizer.json').is_file())


def linear_patch_to_conv(weight, channels):
    """Upstream's linear patch embedding ``[D, p * p * C]`` (patches
    flattened position-major, ``data/data_utils.py`` ``patchify``) ->
    transformers' convolution ``[D, C, p, p]``."""
    width, size = weight.shape
    patch = int(round((size // channels) ** 0.5))
    return weight.reshape(width, patch, patch, channels).permute(0, 3, 1, 2)


def conv_patch_to_linear(weight):
    """The inverse of :func:`linear_patch_to_conv`."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def check_bagel_state(state, path):
    """Raise naming ``path`` unless ``state`` has BAGEL's top-level
    prefixes, each of them; the recomputed tables are dropped."""
    state = {k: v for k, v in state.items()
             if not k.startswith(RECOMPUTED_PREFIXES)}
    other = [k for k in state if not k.startswith(BAGEL_PREFIXES)]
    absent = [p for p in BAGEL_PREFIXES
              if not any(k.startswith(p) for k in state)]
    if other or absent:
        problems = (other and f'unexpected keys {_listing(other)}',
                    absent and f'no {", ".join(p + "*" for p in absent)} keys')
        raise ValueError(f"'{path}' is not a BAGEL checkpoint: "
                         + '; '.join(p for p in problems if p))
    return state


def read_vae(path, config):
    """``ae.safetensors`` -> ``AutoencoderKL(**config)`` state dict: the
    BFL/LDM layout through diffusers' LDM converter, or diffusers keys as
    they are (what :func:`write_bagel_folder` writes for a model built
    without BFL's file)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import load_file
    state = load_file(path)
    if any(k.startswith('encoder.down.') for k in state):
        state = convert_ldm_vae_checkpoint(state, config)
    check_vae_state(state, config, path)
    return state


def load_bagel_weights(path, vae_config, vit_channels=3):
    """``(bagel_state, vae_state)`` of a BAGEL folder: upstream's key names,
    the ViT patch embedding as transformers' convolution; the VAE as
    diffusers keys."""
    from safetensors.torch import load_file
    files = check_bagel_folder(path)
    state = check_bagel_state(load_file(files['weights']), files['weights'])
    if state[PATCH_KEY].ndim == 2:
        state[PATCH_KEY] = linear_patch_to_conv(state[PATCH_KEY],
                                                vit_channels)
    return state, read_vae(files['vae'], vae_config)


def write_bagel_folder(out_dir, state, vae_state, llm_config, vit_config,
                       tokenizer_files_from):
    """Write the BAGEL-7B-MoT layout: the counterpart of
    :func:`load_bagel_weights`.

    ``model.safetensors`` and the same tensors as ``ema.safetensors``
    (upstream's name for the weights its loaders read), the ViT patch
    embedding as upstream's linear layer; ``ae.safetensors`` (diffusers
    keys); ``llm_config.json``, ``vit_config.json`` (the whole SigLIP) and
    the tokenizer. Written beside ``out_dir`` and renamed: complete or not
    there at all.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"export folder '{out_dir}' is not empty")
    tokenizer_files = _tokenizer_sources(tokenizer_files_from)
    state = _plain(check_bagel_state(state, 'state'))
    if state[PATCH_KEY].ndim == 4:
        state[PATCH_KEY] = conv_patch_to_linear(state[PATCH_KEY])
    vae_state = _plain(vae_state)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f'.{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}')
    tmp.mkdir()
    try:
        for name, config in (('llm_config.json', llm_config),
                             ('vit_config.json', vit_config)):
            config = config.to_dict() if hasattr(config, 'to_dict') \
                else dict(config)
            config.pop('_attn_implementation', None)
            (tmp / name).write_text(
                json.dumps(config, indent=2, sort_keys=True) + '\n')
        for name in tokenizer_files:
            shutil.copyfile(Path(tokenizer_files_from) / name, tmp / name)
        save_safetensors(state, tmp / 'model.safetensors')
        shutil.copyfile(tmp / 'model.safetensors', tmp / 'ema.safetensors')
        save_safetensors(vae_state, tmp / 'ae.safetensors')
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


__all__ = ['BAGEL_7B_MOT', 'FLUX_VAE_CONFIG', 'check_bagel_folder',
           'check_bagel_state', 'conv_patch_to_linear',
           'linear_patch_to_conv', 'load_bagel_weights', 'read_configs',
           'read_vae', 'write_bagel_folder']
