"""Checks that a local Hugging Face folder is complete before loading it.

reca_toolkit never downloads: users bring checkpoints as local folders. A
missing or partial folder should fail at start-up with the path and how to
get the files, not deep inside ``from_pretrained``.
"""
import json
from pathlib import Path


def check_hf_folder(path, what, how_to_get, need_tokenizer=True):
    """Raise ``FileNotFoundError`` naming what ``path`` lacks.

    Weights must be safetensors (a single file or an index with its shards):
    reca_toolkit does not unpickle third-party ``.bin`` files.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{what}: weights folder '{path}' does not exist. {how_to_get}")
    missing = []
    if not (path / 'config.json').is_file():
        missing.append('config.json')
    index = path / 'model.safetensors.index.json'
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())['weight_map'].values()))
        missing += [s for s in shards if not (path / s).is_file()]
    elif not (path / 'model.safetensors').is_file():
        if any(path.glob('*.bin')):
            missing.append('model.safetensors (the folder has only pickled '
                           '.bin weights, which reca_toolkit does not load; '
                           'use the safetensors release)')
        else:
            missing.append('model.safetensors')
    if need_tokenizer and not ((path / 'tokenizer.json').is_file()
                               or (path / 'tokenizer_config.json').is_file()):
        missing.append('tokenizer.json')
    if missing:
        raise FileNotFoundError(
            f"{what}: weights folder '{path}' is incomplete; missing "
            f"{', '.join(missing)}. {how_to_get}")
