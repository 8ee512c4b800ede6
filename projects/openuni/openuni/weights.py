"""OpenUni's weights: four local parts, checked before anything is built.

* ``checkpoint``: the OpenUni ``.pth`` (wusize/openuni,
  ``openuni_{b,l}_*.pth``), loaded with ``torch.load(weights_only=True)``,
  or a ``.safetensors`` with the same keys. Its top-level prefixes are
  ``meta_queries``, ``connector.``, ``projector.`` and ``transformer.``
  (SANA, fine-tuned by OpenUni's text-to-image stage); keys of the frozen
  InternVL (``lmm.``) or DC-AE (``vae.``) are ignored here, those parts
  come from their own folders. The prefixes are the layout of the
  published checkpoint as far as it could be checked without it: a file
  that does not fit fails, naming the keys.
* ``internvl``: an InternVL3-1B/2B ``-hf`` folder (transformers
  ``InternVLForConditionalGeneration``, with its tokenizer).
* ``sana``: a SANA 600M / 1600M 512 px diffusers folder: a pipeline folder
  with ``transformer/`` (and ``scheduler/``), or the transformer folder.
* ``dcae``: a DC-AE folder (``mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers``),
  or a pipeline folder with ``vae/``.

An export (``OpenUniUMM.save_pretrained``) writes one folder holding all
four under the default names (:data:`DEFAULT_NAMES`), which
``pretrained=FOLDER`` reads back.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

DEFAULT_NAMES = dict(checkpoint='openuni.safetensors', internvl='internvl',
                     sana='sana', dcae='dc-ae')
CONFIG_NAME = 'openuni_config.json'
PREFIXES = ('meta_queries', 'connector.', 'projector.', 'transformer.')
IGNORED_PREFIXES = ('lmm.', 'vae.', 'llm.')
HOW_TO_GET = dict(
    checkpoint='download openuni_{b,l}_*.pth from the wusize/openuni model '
               'repository',
    internvl='download OpenGVLab/InternVL3-1B-hf (OpenUni-B) or '
             'OpenGVLab/InternVL3-2B-hf (OpenUni-L)',
    sana='download Efficient-Large-Model/Sana_600M_512px_diffusers '
         '(OpenUni-B) or Sana_1600M_512px_diffusers (OpenUni-L)',
    dcae='download mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers')


def resolve_paths(pretrained=None, weights=None):
    """The four parts' paths: ``weights`` (a dict naming any of
    ``checkpoint``, ``internvl``, ``sana``, ``dcae``) over the default
    names inside ``pretrained``."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(DEFAULT_NAMES))
    if unknown:
        raise ValueError(f'weights= names unknown parts {unknown}; valid: '
                         f'{sorted(DEFAULT_NAMES)}')
    paths = {}
    for name, default in DEFAULT_NAMES.items():
        if weights.get(name) is not None:
            paths[name] = Path(weights[name])
        elif pretrained is not None:
            paths[name] = Path(pretrained) / default
            if name == 'checkpoint' and not paths[name].is_file():
                # the published name: any .pth in the folder
                found = sorted(Path(pretrained).glob('openuni*.pth'))
                if found:
                    paths[name] = found[0]
        else:
            paths[name] = None
    return paths


def _diffusers_folder(path, sub):
    """``path/sub`` of a pipeline folder, or ``path`` itself."""
    if (path / sub / 'config.json').is_file():
        return path / sub
    return path


def check_openuni_weights(paths):
    """Raise ``FileNotFoundError`` naming every missing part at once."""
    problems = []
    for name, path in paths.items():
        if path is None:
            problems.append(f'{name}: no path given ({HOW_TO_GET[name]})')
            continue
        if name == 'checkpoint':
            if not path.is_file():
                problems.append(f"{name}: '{path}' does not exist "
                                f'({HOW_TO_GET[name]})')
            elif path.suffix not in ('.pth', '.pt', '.safetensors'):
                problems.append(f"{name}: '{path}' is not a .pth or "
                                '.safetensors file')
            continue
        if not path.is_dir():
            problems.append(f"{name}: folder '{path}' does not exist "
                            f'({HOW_TO_GET[name]})')
            continue
        folder = path if name == 'internvl' else _diffusers_folder(
            path, 'transformer' if name == 'sana' else 'vae')
        missing = []
        if not (folder / 'config.json').is_file():
            missing.append('config.json')
        weights_file = ('model.safetensors' if name == 'internvl' else
                        'diffusion_pytorch_model.safetensors')
        index = folder / (weights_file + '.index.json')
        if not ((folder / weights_file).is_file() or index.is_file()):
            missing.append(weights_file)
        if name == 'internvl' and not (
                (folder / 'tokenizer.json').is_file()
                or (folder / 'tokenizer_config.json').is_file()):
            missing.append('tokenizer.json')
        if missing:
            problems.append(f"{name}: folder '{folder}' lacks {missing} "
                            f'({HOW_TO_GET[name]})')
    if problems:
        raise FileNotFoundError(
            'OpenUni weights are incomplete; reca_toolkit never downloads:\n'
            + '\n'.join(f'  - {p}' for p in problems))


def sana_folder(path):
    return _diffusers_folder(Path(path), 'transformer')


def dcae_folder(path):
    return _diffusers_folder(Path(path), 'vae')


def scheduler_config(sana_path):
    """The SANA folder's ``scheduler/scheduler_config.json``, if any."""
    if sana_path is None:
        return None
    file = Path(sana_path) / 'scheduler' / 'scheduler_config.json'
    return json.loads(file.read_text()) if file.is_file() else None


def read_checkpoint(path):
    """The OpenUni state dict, split by part; unknown prefixes fail."""
    path = Path(path)
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location='cpu', weights_only=True)
        for wrapper in ('state_dict', 'model'):
            if isinstance(state, dict) and isinstance(state.get(wrapper),
                                                      dict):
                state = state[wrapper]
    parts = {p.rstrip('.'): {} for p in PREFIXES}
    unexpected = []
    for key, value in state.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        for prefix in PREFIXES:
            if key == prefix or key.startswith(prefix):
                parts[prefix.rstrip('.')][key[len(prefix):]] = value
                break
        else:
            unexpected.append(key)
    if unexpected:
        raise ValueError(f"OpenUni checkpoint '{path}' has keys outside "
                         f'{PREFIXES}: {unexpected[:8]}')
    return parts


def read_openuni_config(pretrained):
    """The connector and query settings an export recorded, or {}."""
    if pretrained is None:
        return {}
    file = Path(pretrained) / CONFIG_NAME
    return json.loads(file.read_text()) if file.is_file() else {}


def write_folder(out_dir, write):
    """Run ``write(tmp)`` and move the result to ``out_dir`` in one rename:
    the folder appears complete or not at all."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"'{out_dir}' exists; export to a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='.openuni-', dir=out_dir.parent))
    try:
        write(tmp)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
