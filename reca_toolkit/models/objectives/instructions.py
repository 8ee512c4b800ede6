"""The pool of reconstruction instructions RecA pairs with an image.

The RecA authors sample one of ~360 "describe the image" instructions per
sample; this project ships its own pool of 345, written for reca_toolkit, in
``reconstruction_instructions.txt`` (one per line).
"""
from functools import lru_cache
from pathlib import Path

DEFAULT_POOL = Path(__file__).with_name('reconstruction_instructions.txt')


@lru_cache(maxsize=None)
def load_instructions(path=DEFAULT_POOL):
    """The non-empty lines of ``path``, as a tuple."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'instruction file {path} does not exist')
    pool = tuple(line.strip() for line in path.read_text().splitlines()
                 if line.strip())
    if not pool:
        raise ValueError(f'instruction file {path} has no instructions')
    return pool
