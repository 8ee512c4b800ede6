"""The interfaces metrics call their injected scorers through.

* a *detector* is called as ``detector(image)`` with an ``[H, W, 3]`` uint8
  RGB array and returns a list of :class:`Detection`;
* a *colour classifier* is called as ``classifier(image, detections,
  classname)`` and returns one colour name per detection;
* a *VQA model* is called as ``vqa(image, question)`` and returns the answer
  text;
* a *judge* is called as ``judge(text, images)`` with PIL images and returns
  the reply text.

Any scorer may define ``info()`` returning a JSON-able dict (package
versions, weight hashes, model names) that evaluation cards record.
"""
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Detection:
    """One detected object: ``box`` is ``(x1, y1, x2, y2)`` in pixels."""
    label: str
    score: float
    box: tuple
    mask: np.ndarray = None


def file_sha256(path, chunk=1 << 20):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_version(name):
    """The installed version of a distribution, or None."""
    import importlib.metadata
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def require_torchmetrics(module, what):
    """``torchmetrics.<module>``, imported on first use: torchmetrics is an
    optional dependency (the ``eval`` extra)."""
    try:
        return importlib.import_module(f'torchmetrics.{module}')
    except ImportError:
        raise ImportError(
            f'{what} is computed by torchmetrics, an optional dependency '
            "that is not installed: pip install 'reca_toolkit[eval]' (or "
            "pip install 'torchmetrics>=1.5')") from None


def load_state_dict(path):
    """Weights from ``.safetensors`` or a ``torch.load(weights_only=True)``
    file: third-party checkpoints are never unpickled."""
    from reca_toolkit.engine.compat import load_local_checkpoint
    path = str(Path(path).expanduser())
    state = load_local_checkpoint(path, map_location='cpu')
    return state.get('state_dict', state) if isinstance(state, dict) \
        else state
