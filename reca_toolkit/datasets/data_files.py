"""What the container sources (tar shards, parquet, local Hugging Face
datasets) share: finding their files, refusing hub ids, captions."""
import glob
import os
import re
from pathlib import Path

from reca_toolkit.datasets.captioned import parse_conversation

HUB_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')


def looks_like_hub_id(spec):
    """``owner/name`` that is no local path and whose ``owner`` is no local
    folder either: perhaps a Hugging Face hub id."""
    spec = str(spec)
    return (bool(HUB_ID.match(spec)) and not Path(spec).exists()
            and not Path(spec.split('/')[0]).is_dir())


def hub_id_error(spec, kind):
    name = str(spec).split('/')[-1]
    return FileNotFoundError(
        f"{kind}: '{spec}' is not a local file or folder. If it is a Hugging "
        'Face hub id: the toolkit never downloads data; download it first, '
        'on a machine with internet:\n'
        f'  huggingface-cli download {spec} --repo-type dataset '
        f'--local-dir data/{name}\n'
        f"then point the source at the folder (e.g. 'data/{name}'); "
        'docs/data.md has the layout of each dataset.')


def expand_files(spec, suffixes, kind):
    """``spec`` -- a file, a folder (searched recursively), a glob, or a list
    of those -> the sorted, de-duplicated files ending in ``suffixes``."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise ValueError(f'{kind}: no files given')
    suffixes = tuple(s.lower() for s in suffixes)
    files = set()
    for item in specs:
        item = os.path.expanduser(str(item))
        path = Path(item)
        if any(c in item for c in '*?['):
            found = [Path(p) for p in glob.glob(item, recursive=True)]
        elif path.is_dir():
            found = list(path.rglob('*'))
        elif path.is_file():
            files.add(path)
            continue
        elif looks_like_hub_id(item):
            raise hub_id_error(item, kind)
        else:
            raise FileNotFoundError(f"{kind}: '{item}' does not exist")
        found = [p for p in found
                 if p.is_file() and p.name.lower().endswith(suffixes)]
        if not found:
            raise FileNotFoundError(
                f"{kind}: '{item}' matches no {'/'.join(suffixes)} file")
        files.update(found)
    return sorted(files)


def caption_fields(value, caption_question, where):
    """A caption string or a LLaVA message list -> the sample fields
    CaptionedImages gives: ``caption`` and ``conversations``."""
    if isinstance(value, str):
        caption = value.strip()
        return dict(caption=caption,
                    conversations=[(caption_question, caption)])
    if isinstance(value, (list, tuple)):
        return dict(conversations=parse_conversation(list(value), where))
    raise ValueError(f'{where}: caption is neither text nor a conversation '
                     f'(got {type(value).__name__})')
