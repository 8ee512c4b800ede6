"""Harmon's released weights: folder layout, KL-16 conversion, safe loading.

Harmon (wusize/Harmon) ships PyTorch pickles: ``kl16.ckpt``, MAR's KL-16
autoencoder in the CompVis LDM layout under a ``'model'`` key, and
``harmon_{0.5b,1.5b}.pth``, a plain state dict of the Harmon module without
its VAE (top-level ``llm.`` (a Qwen2 ``*ForCausalLM``), ``mar.``,
``proj_in.``, ``proj_out.``). Its LLM config and tokenizer are those of
Qwen2.5-{0.5B,1.5B}-Instruct. reca_toolkit expects them in one local
folder::

    FOLDER/config.json               Qwen2 config
    FOLDER/tokenizer.json            (or vocab.json + merges.txt)
    FOLDER/tokenizer_config.json
    FOLDER/kl16.ckpt                 or kl16.safetensors (diffusers keys)
    FOLDER/harmon_{variant}.pth      or harmon_{variant}.safetensors

and reads the safetensors files when present. The pickles are only ever
opened with ``torch.load(weights_only=True)``, which refuses to run code;
``convert_harmon_folder`` (``tools/model_converters/harmon_to_safetensors.py``)
writes the safetensors files once, so later runs never touch a pickle.
"""
import json
import os
import pickle
import re
import shutil
import uuid
from pathlib import Path

import torch

# MAR's KL-16 (LTH14/mar models/vae.py: ch=128, ch_mult=(1, 1, 2, 2, 4),
# num_res_blocks=2, z_channels=embed_dim=16, double_z) as diffusers
# arguments. The encoder attends at 16 px of 256 (attn_resolutions=(16,)),
# the lowest level only; the decoder has attn_resolutions=() so only its mid
# block attends. quant_conv (32 -> 32) and post_quant_conv (16 -> 16) are
# both there, and GroupNorm has 32 groups with eps 1e-6 as in diffusers.
# Harmon and MAR multiply the latents by 0.2325 and shift nothing.
KL16_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=['DownEncoderBlock2D'] * 4 + ['AttnDownEncoderBlock2D'],
    up_block_types=['UpDecoderBlock2D'] * 5,
    block_out_channels=[128, 128, 256, 256, 512],
    layers_per_block=2,
    act_fn='silu',
    latent_channels=16,
    norm_num_groups=32,
    sample_size=256,
    scaling_factor=0.2325,
    use_quant_conv=True,
    use_post_quant_conv=True,
    mid_block_add_attention=True,
)

# Keys of LDM's training loss (LPIPS and discriminator), which an LDM
# autoencoder checkpoint may carry next to the model: not part of it.
LDM_TRAINING_ONLY_PREFIXES = ('loss.', )

# What diffusers' convert_ldm_vae_checkpoint leaves alone: attention inside
# the encoder's down levels (LDM ``AttnBlock``: 1x1 convolutions).
_DOWN_ATTENTION = re.compile(
    r'^encoder\.down\.(\d+)\.attn\.(\d+)\.(norm|q|k|v|proj_out)\.'
    r'(weight|bias)$')
_ATTENTION_PARTS = dict(norm='group_norm', q='to_q', k='to_k', v='to_v',
                        proj_out='to_out.0')

HARMON_VARIANTS = {'0.5b': 'Qwen/Qwen2.5-0.5B-Instruct',
                   '1.5b': 'Qwen/Qwen2.5-1.5B-Instruct'}
# Harmon.state_dict() drops every key with 'vae.'; the rest is these.
HARMON_PREFIXES = ('llm.', 'mar.', 'proj_in.', 'proj_out.')
TOKENIZER_FILES = ('tokenizer.json', 'vocab.json', 'merges.txt',
                   'tokenizer_config.json', 'special_tokens_map.json',
                   'added_tokens.json')


def load_pickled_state_dict(path):
    """``torch.load(path, weights_only=True)`` on the CPU.

    A pickle can run any code when loaded; ``weights_only`` allows tensors
    and plain containers only. A file that needs more is refused, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f"'{path}' holds more than tensors and plain containers, and "
            'reca_toolkit never unpickles code (torch.load weights_only='
            'True refused it). Use a safetensors release of these weights, '
            'or re-save the tensors alone from an environment you trust. '
            f'torch said: {str(error).splitlines()[0]}') from error


def tensor_dict(obj, path, wrappers=('state_dict', 'model')):
    """The ``{name: tensor}`` of a loaded checkpoint, unwrapping one of
    ``wrappers``; anything else raises naming ``path``."""
    if isinstance(obj, dict) and not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        for key in wrappers:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"'{path}' is not a state dict of tensors")
    other = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if other:
        raise ValueError(f"'{path}' is not a state dict of tensors: "
                         f'{_listing(other)} are not tensors')
    return obj


def vae_shapes(config=None):
    """``{diffusers key: shape}`` of an ``AutoencoderKL(**config)``, built
    on the meta device (no memory, no initialisation)."""
    from diffusers import AutoencoderKL
    with torch.device('meta'):
        model = AutoencoderKL(**(KL16_CONFIG if config is None else config))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_kl16_state_dict(ldm_state, config=None):
    """MAR's KL-16 state dict (LDM layout) -> ``AutoencoderKL`` state dict.

    The bulk is diffusers' own ``convert_ldm_vae_checkpoint``; this adds the
    encoder's down-level attention it does not map, and is strict: unknown
    LDM keys, missing or unexpected diffusers keys and wrong shapes raise,
    naming them.

    Args:
        ldm_state: ``{LDM key: tensor}``, or the checkpoint with it under
            ``'model'``. ``loss.*`` keys are dropped.
        config: the ``AutoencoderKL`` arguments; ``KL16_CONFIG`` by default.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    config = KL16_CONFIG if config is None else config
    state = tensor_dict(ldm_state, 'the KL-16 checkpoint',
                        wrappers=('model', ))
    state = {k: v for k, v in state.items()
             if not k.startswith(LDM_TRAINING_ONLY_PREFIXES)}
    names = {}
    for key in state:
        match = _DOWN_ATTENTION.match(key)
        if match:
            level, index, part, kind = match.groups()
            names[key] = (f'encoder.down_blocks.{level}.attentions.{index}.'
                          f'{_ATTENTION_PARTS[part]}.{kind}')
    # Trace where diffusers' converter puts each key: feed it one-element
    # tensors of the same rank numbered by key, read the numbers back.
    rest = [k for k in state if k not in names]
    trace = {k: torch.full((1, ) * state[k].dim(), float(i),
                           dtype=torch.float64) for i, k in enumerate(rest)}
    for new_key, value in convert_ldm_vae_checkpoint(trace, config).items():
        names[rest[int(value.item())]] = new_key
    expected = vae_shapes(config)
    unknown = [k for k in state if k not in names]
    unexpected = [f'{k} -> {v}' for k, v in names.items() if v not in expected]
    missing = sorted(set(expected) - set(names.values()))
    problems = [f'{what}: {_listing(keys)}' for what, keys in (
        ('LDM keys with no diffusers counterpart', unknown),
        ('keys the AutoencoderKL does not have', unexpected),
        ('AutoencoderKL keys the checkpoint lacks', missing)) if keys]
    if problems:
        raise ValueError('KL-16 checkpoint does not match the AutoencoderKL '
                         'config; ' + '; '.join(problems))
    converted = {}
    for key, new_key in names.items():
        tensor, shape = state[key], expected[new_key]
        if tuple(tensor.shape) != shape:
            # 1x1 convolution -> linear: [C, C, 1, 1] -> [C, C].
            if tensor.shape[:len(shape)] != shape or any(
                    s != 1 for s in tensor.shape[len(shape):]):
                raise ValueError(
                    f'KL-16 key {key} has shape {tuple(tensor.shape)}, but '
                    f'{new_key} needs {shape}')
            tensor = tensor.reshape(shape)
        converted[new_key] = tensor
    return converted


def check_vae_state(state, config, path):
    """Raise naming ``path`` unless ``state`` has exactly the keys and
    shapes of ``AutoencoderKL(**config)``."""
    expected = vae_shapes(config)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f'{k} {tuple(v.shape)} (needs {expected[k]})'
             for k, v in state.items()
             if k in expected and tuple(v.shape) != expected[k]]
    problems = [f'{what}: {_listing(keys)}' for what, keys in (
        ('missing', missing), ('unexpected', unexpected),
        ('wrong shapes', wrong)) if keys]
    if problems:
        raise ValueError(f"'{path}' does not match the AutoencoderKL config "
                         f'({"; ".join(problems)})')


def _check_variant(variant):
    if variant not in HARMON_VARIANTS:
        raise ValueError(f"Harmon variant '{variant}' is not one of "
                         f'{sorted(HARMON_VARIANTS)}')


def check_harmon_folder(path, variant, need_llm_files=True):
    """The files of a Harmon folder, safetensors preferred.

    Raises ``FileNotFoundError`` listing every missing file with the command
    that gets it. ``need_llm_files=False`` checks the weights alone.

    Returns:
        dict with ``config`` (None without ``need_llm_files``), ``vae`` and
        ``harmon``: the paths to read.
    """
    _check_variant(variant)
    path = Path(path)
    qwen, harmon = HARMON_VARIANTS[variant], f'harmon_{variant}'

    def get(repo, *names):
        return (f'huggingface-cli download {repo} {" ".join(names)} '
                f'--local-dir {path}')

    missing = []
    if need_llm_files:
        if not (path / 'config.json').is_file():
            missing.append(f'config.json (the LLM config): '
                           f'{get(qwen, "config.json")}')
        if not ((path / 'tokenizer.json').is_file() or (
                (path / 'vocab.json').is_file()
                and (path / 'merges.txt').is_file())):
            missing.append(f'tokenizer.json (or vocab.json + merges.txt): '
                           f'{get(qwen, "tokenizer.json")}')
        if not (path / 'tokenizer_config.json').is_file():
            missing.append(f'tokenizer_config.json: '
                           f'{get(qwen, "tokenizer_config.json")}')
    files, pickles = {}, []
    for key, stem, source in (('vae', 'kl16', 'ckpt'),
                              ('harmon', harmon, 'pth')):
        for name in (f'{stem}.safetensors', f'{stem}.{source}'):
            if (path / name).is_file():
                files[key] = path / name
                break
        else:
            pickles.append(f'{stem}.{source}')
            missing.append(f'{stem}.{source} (or its converted '
                           f'{stem}.safetensors): '
                           f'{get("wusize/harmon", f"{stem}.{source}")}')
    if missing:
        where = 'does not exist' if not path.is_dir() else 'is incomplete'
        convert = (f' Then `python tools/model_converters/harmon_to_'
                   f'safetensors.py {path} --variant {variant}` converts '
                   f'{" and ".join(pickles)} to safetensors once.'
                   if pickles else '')
        raise FileNotFoundError(
            f"Harmon-{variant.upper()}: folder '{path}' {where}; missing:\n"
            + ''.join(f'  - {m}\n' for m in missing)
            + 'Run these on a machine with internet access and copy the '
            'files over: reca_toolkit never downloads.' + convert)
    files['config'] = path / 'config.json' if need_llm_files else None
    if need_llm_files:
        model_type = json.loads(files['config'].read_text()).get('model_type')
        if model_type != 'qwen2':
            raise ValueError(
                f"'{files['config']}' is model_type='{model_type}'; Harmon's "
                f"LLM is Qwen2 ({qwen}'s config.json)")
    return files


def check_harmon_state(state, path):
    """Raise naming ``path`` unless ``state`` looks like Harmon's: only the
    top-level prefixes of ``HARMON_PREFIXES``, each of them present.
    ``vae.`` keys (a VAE saved along) are dropped: the VAE is kl16's."""
    state = {k: v for k, v in state.items() if not k.startswith('vae.')}
    other = [k for k in state if not k.startswith(HARMON_PREFIXES)]
    absent = [p for p in HARMON_PREFIXES
              if not any(k.startswith(p) for k in state)]
    if other or absent:
        raise ValueError(
            f"'{path}' is not a Harmon checkpoint: "
            + '; '.join(part for part in (
                other and f'unexpected keys {_listing(other)}',
                absent and f'no {", ".join(p + "*" for p in absent)} keys')
                if part))
    return state


def _read_vae(path, config):
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        state = load_file(path)
        check_vae_state(state, config, path)
        return state
    return convert_kl16_state_dict(
        tensor_dict(load_pickled_state_dict(path), path, wrappers=('model', )),
        config)


def _read_harmon(path):
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        return check_harmon_state(load_file(path), path)
    return check_harmon_state(
        tensor_dict(load_pickled_state_dict(path), path), path)


def load_harmon_weights(path, variant, vae_config=None):
    """Read a Harmon folder's weights, safetensors when present.

    Returns:
        ``(harmon_state, vae_state)``: Harmon's tensors under its own key
        names, and the KL-16 autoencoder as an ``AutoencoderKL``
        (``vae_config``, ``KL16_CONFIG`` by default) state dict.
    """
    files = check_harmon_folder(path, variant)
    vae_config = KL16_CONFIG if vae_config is None else vae_config
    return _read_harmon(files['harmon']), _read_vae(files['vae'], vae_config)


def save_safetensors(state, path):
    """Write ``state`` to ``path`` atomically (temporary file, then rename).

    Tensors that share memory (Harmon's tied ``embed_tokens`` and
    ``lm_head``) are written once each, as safetensors requires."""
    from safetensors.torch import save_file
    path = Path(path)
    tensors, seen = {}, set()
    for key, value in state.items():
        value = value.detach().contiguous()
        pointer = value.untyped_storage().data_ptr()
        if value.numel() and pointer in seen:
            value = value.clone()
        seen.add(pointer)
        tensors[key] = value
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    try:
        save_file(tensors, tmp, metadata={'format': 'pt'})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def convert_harmon_folder(path, variant, vae_config=None):
    """Write ``kl16.safetensors`` (diffusers keys) and
    ``harmon_{variant}.safetensors`` next to the pickles, each atomically;
    files already converted are left alone.

    Returns:
        the paths written (empty when there was nothing to do).
    """
    files = check_harmon_folder(path, variant, need_llm_files=False)
    vae_config = KL16_CONFIG if vae_config is None else vae_config
    written = []
    for key, read in (('vae', lambda p: _read_vae(p, vae_config)),
                      ('harmon', _read_harmon)):
        source = files[key]
        if source.suffix != '.safetensors':
            written.append(save_safetensors(
                read(source), source.with_suffix('.safetensors')))
    return written


def _tokenizer_sources(folder):
    folder = Path(folder)
    present = {n for n in TOKENIZER_FILES if (folder / n).is_file()}
    if not ('tokenizer.json' in present or {'vocab.json', 'merges.txt'}
            <= present) or 'tokenizer_config.json' not in present:
        raise FileNotFoundError(
            f"tokenizer folder '{folder}' needs tokenizer.json (or vocab.json"
            f' + merges.txt) and tokenizer_config.json; it has '
            f'{sorted(present) or "none of them"}')
    return sorted(present)


def write_harmon_folder(out_dir, harmon_state, vae_state, llm_config,
                        tokenizer_files_from, variant, vae_config=None):
    """Write the Harmon folder layout: the export counterpart of
    :func:`load_harmon_weights`.

    ``harmon_{variant}.pth`` (``torch.save`` of the plain tensor dict, what
    Harmon's own scripts load) and ``.safetensors``, ``kl16.safetensors``,
    ``config.json`` from ``llm_config`` (a dict or a transformers config)
    and the tokenizer files of ``tokenizer_files_from``. Everything is
    checked first, written into a temporary folder beside ``out_dir`` and
    renamed: the folder is complete or not there at all.
    """
    _check_variant(variant)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"export folder '{out_dir}' is not empty")
    tokenizer_files = _tokenizer_sources(tokenizer_files_from)
    harmon_state = _plain(check_harmon_state(tensor_dict(
        harmon_state, 'harmon_state', wrappers=()), 'harmon_state'))
    vae_state = _plain(tensor_dict(vae_state, 'vae_state', wrappers=()))
    check_vae_state(vae_state, KL16_CONFIG if vae_config is None
                    else vae_config, 'vae_state')
    config = (llm_config.to_dict() if hasattr(llm_config, 'to_dict')
              else dict(llm_config))
    model_type = config.get('model_type')
    if model_type != 'qwen2':
        raise ValueError(f"llm_config is model_type='{model_type}'; "
                         "Harmon's LLM is Qwen2")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # mkdir (not mkdtemp, which makes it private) gives umask permissions.
    tmp = out_dir.with_name(f'.{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}')
    tmp.mkdir()
    try:
        (tmp / 'config.json').write_text(
            json.dumps(config, indent=2, sort_keys=True) + '\n')
        for name in tokenizer_files:
            shutil.copyfile(Path(tokenizer_files_from) / name, tmp / name)
        save_safetensors(vae_state, tmp / 'kl16.safetensors')
        torch.save(harmon_state, tmp / f'harmon_{variant}.pth')
        save_safetensors(harmon_state, tmp / f'harmon_{variant}.safetensors')
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _plain(state):
    """Detached CPU tensors (not Parameters): what a weights file holds."""
    return {k: v.detach().cpu() for k, v in state.items()}


def _listing(keys, limit=12):
    keys = list(keys)
    shown = ', '.join(keys[:limit])
    return shown + (f' and {len(keys) - limit} more' if len(keys) > limit
                    else '')
