"""Show-o's released weights: one local folder of four published parts.

Show-o (showlab/Show-o) ships a diffusers-style ``Showo`` folder
(``ModelMixin``/``ConfigMixin``: ``config.json`` with ``vocab_size``,
``w_clip_vit``, ...; weights under ``showo.`` -- a Phi ``*ForCausalLM``,
vendored from transformers so its keys are transformers' -- and, with
CLIP, ``mm_projector.``), and builds its tokenizer, image tokenizer and
CLIP from three more repositories. reca_toolkit expects them side by side::

    FOLDER/showo/        showlab/show-o-w-clip-vit-512x512 (or -w-clip-vit,
                         show-o-512x512 for the VQ variant): config.json +
                         weights (model.safetensors, pytorch_model.bin, ...,
                         or a sharded *.index.json)
    FOLDER/phi-1_5/      microsoft/phi-1_5: config.json + tokenizer files
    FOLDER/magvitv2/     showlab/magvitv2 (MAGVITv2Tokenizer.from_pretrained)
    FOLDER/clip/         openai/clip-vit-large-patch14-336 (CLIP variant)

A missing part fails before anything is built, naming every missing file.
``.bin`` files load with ``torch.load(weights_only=True)`` only.
"""
import json
import shutil
import uuid
from pathlib import Path

from reca_toolkit.engine.compat import load_local_checkpoint
from reca_toolkit.models.harmon_weights import save_safetensors

PARTS = dict(showo='showo', llm='phi-1_5', magvit='magvitv2', clip='clip')
SHOWO_WEIGHTS = ('model.safetensors', 'diffusion_pytorch_model.safetensors',
                 'pytorch_model.safetensors', 'pytorch_model.bin',
                 'diffusion_pytorch_model.bin')
SOURCES = dict(showo='showlab/show-o-w-clip-vit-512x512 (256 px: '
               'show-o-w-clip-vit; VQ variant: show-o-512x512)',
               llm='microsoft/phi-1_5', magvit='showlab/magvitv2',
               clip='openai/clip-vit-large-patch14-336')
HINT = ('Show-o needs one local folder with showo/, phi-1_5/, magvitv2/ '
        'and (CLIP variant) clip/ -- ' +
        ', '.join(f'{PARTS[k]}/ <- {v}' for k, v in SOURCES.items()) +
        ' (e.g. huggingface-cli download REPO --local-dir FOLDER/PART); '
        'reca_toolkit never downloads.')
# The published Show-o-512 shapes (microsoft/phi-1_5 config.json,
# openai/clip-vit-large-patch14-336's vision_config, the Show-o configs'
# vocab_size), for building it without its folder (the sizing tools).
SHOWO_ARCHITECTURES = dict(
    vocab_size=58498,
    text_vocab=50305,
    llm=dict(vocab_size=51200, hidden_size=2048, intermediate_size=8192,
             num_hidden_layers=24, num_attention_heads=32,
             num_key_value_heads=32, max_position_embeddings=2048,
             partial_rotary_factor=0.5, layer_norm_eps=1e-5,
             hidden_act='gelu_new', tie_word_embeddings=False),
    clip=dict(hidden_size=1024, intermediate_size=4096,
              num_hidden_layers=24, num_attention_heads=16, image_size=336,
              patch_size=14, projection_dim=768, hidden_act='quick_gelu'),
)


def _weights(folder):
    index = sorted(folder.glob('*.index.json'))
    if index:
        shards = sorted(set(json.loads(index[0].read_text())[
            'weight_map'].values()))
        return [folder / s for s in shards]
    for name in SHOWO_WEIGHTS:
        if (folder / name).is_file():
            return [folder / name]
    return None


def check_showo_folder(pretrained, clip=True):
    """The parts of ``pretrained`` (``{part: path}`` plus the Show-o
    ``showo_config``); raises ``FileNotFoundError`` naming every missing
    file, or ``ValueError`` for a Show-o config of the other variant."""
    root = Path(pretrained)
    if not root.is_dir():
        raise FileNotFoundError(f"Show-o weights folder '{root}' does not "
                                f'exist. {HINT}')
    parts = {k: root / v for k, v in PARTS.items()
             if k != 'clip' or clip}
    missing = []
    for key, folder in parts.items():
        if not (folder / 'config.json').is_file():
            missing.append(f'{PARTS[key]}/config.json')
    if (parts['showo'] / 'config.json').is_file():
        shards = _weights(parts['showo'])
        if shards is None:
            missing.append(f"showo/ weights (one of {', '.join(SHOWO_WEIGHTS)}"
                           ' or a *.index.json with its shards)')
        else:
            missing += [f'showo/{s.name}' for s in shards if not s.is_file()]
    tokenizer = parts['llm']
    if not ((tokenizer / 'tokenizer.json').is_file() or
            (tokenizer / 'vocab.json').is_file()):
        missing.append('phi-1_5/tokenizer.json (or vocab.json + merges.txt)')
    magvit = parts['magvit']
    if (magvit / 'config.json').is_file() and not (
            any(magvit.glob('*.safetensors')) or any(magvit.glob('*.bin'))):
        missing.append('magvitv2/ weights (pytorch_model.bin or '
                       '*.safetensors)')
    if clip and (parts['clip'] / 'config.json').is_file() and not any(
            parts['clip'].glob('*.safetensors')):
        missing.append('clip/model.safetensors')
    if missing:
        raise FileNotFoundError(
            f"Show-o weights folder '{root}' is incomplete; missing "
            f"{', '.join(missing)}. {HINT}")
    config = json.loads((parts['showo'] / 'config.json').read_text())
    if 'vocab_size' not in config:
        raise ValueError(f"'{parts['showo']}/config.json' has no vocab_size: "
                         'not a Show-o config')
    if bool(config.get('w_clip_vit', False)) != clip:
        raise ValueError(
            f"'{parts['showo']}/config.json' has w_clip_vit="
            f"{config.get('w_clip_vit')}, but understanding="
            f"{'clip' if clip else 'vq'} needs "
            f"{'a show-o-w-clip-vit' if clip else 'a show-o (VQ)'} folder")
    return dict({k: str(v) for k, v in parts.items()}, showo_config=config)


def load_showo_state(folder):
    """The tensors of a Show-o folder, every shard merged."""
    state = {}
    for shard in _weights(Path(folder)):
        state.update(load_local_checkpoint(str(shard), 'cpu'))
    return state


def write_showo_folder(out_dir, state, showo_config, llm_config, tokenizer,
                       vision, magvit):
    """Write the folder layout of :func:`check_showo_folder`: Show-o's
    ``config.json`` and ``model.safetensors`` (``showo.*``,
    ``mm_projector.*``), the Phi config and tokenizer, CLIP (``vision``, or
    None for the VQ variant) and MAGVIT-v2. Written into a temporary folder
    beside ``out_dir`` and renamed: complete or not there at all."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"export folder '{out_dir}' is not empty")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f'.{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}')
    tmp.mkdir()
    try:
        showo = tmp / PARTS['showo']
        showo.mkdir()
        (showo / 'config.json').write_text(
            json.dumps(showo_config, indent=2, sort_keys=True) + '\n')
        save_safetensors(state, showo / 'model.safetensors')
        llm = tmp / PARTS['llm']
        llm_config.save_pretrained(llm)
        tokenizer.save_pretrained(llm)
        if vision is not None:
            vision.save_pretrained(tmp / PARTS['clip'])
        magvit_dir = tmp / PARTS['magvit']
        magvit_dir.mkdir()
        config = {k: list(v) if isinstance(v, tuple) else v
                  for k, v in magvit.config.items()}
        (magvit_dir / 'config.json').write_text(json.dumps(
            dict(config, _class_name='MAGVITv2'), indent=2) + '\n')
        save_safetensors(magvit.state_dict(),
                         magvit_dir / 'pytorch_model.safetensors')
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
