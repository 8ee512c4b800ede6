"""reca_toolkit: RecA (Reconstruction Alignment) post-training for unified
multimodal models, built on MMEngine."""
from .engine import compat as _compat
from .version import __version__

_compat.apply()

__all__ = ['__version__']
