"""Fixes that make MMEngine 0.10.7 work with torch >= 2.6 and setuptools >= 81.

What each fix works around, with the errors MMEngine gives without it, is in
``docs/engine_notes.md``; each has a regression test in
``tests/test_engine_compat.py``. ``apply()`` is idempotent and runs when
``reca_toolkit`` is imported.

1. Checkpoints load with ``weights_only=True`` -- always, including our own
   resume files: ``MessageHub`` state is saved as plain lists and numbers, so
   nothing in a checkpoint needs unpickling. ``.safetensors`` files load with
   safetensors.
2. Checkpoints are written with ``checkpoint.atomic_write`` (temporary
   file, fsync, rename), so an interrupted save never leaves a half-written
   ``iter_N.pth``; resuming picks ``checkpoint.find_latest_checkpoint``, the
   newest complete checkpoint, whatever ``last_checkpoint`` says; and every
   Runner gets its own ``randomness`` dict (MMEngine shares one default dict
   between them).
3. ``is_installed`` / ``get_installed_path`` use importlib instead of the
   removed ``pkg_resources``.
4. DeepSpeed >= 0.17 removed ``deepspeed.runtime.fp16.onebit``; registering
   DeepSpeed optimizers no longer crashes on it.
"""
import functools
import importlib.metadata
import importlib.util
import inspect
import os.path as osp
import pickle
import warnings

import numpy as np
import torch

from reca_toolkit.engine.checkpoint import (atomic_write,
                                            find_latest_checkpoint)

_APPLIED = False
_HISTORY_BUFFER_TAG = '__history_buffer__'


# 1. weights_only checkpoint loading ------------------------------------------
def load_local_checkpoint(filename, map_location=None):
    """Load a local checkpoint without unpickling arbitrary objects."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    if filename.endswith('.safetensors'):
        from safetensors.torch import load_file
        device = 'cpu' if map_location is None else str(map_location)
        return load_file(filename, device=device)
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(
            f'{filename} holds pickled Python objects, and reca_toolkit only '
            'loads checkpoints with torch.load(weights_only=True). '
            'Checkpoints written by reca_toolkit always load; for a trusted '
            'third-party file, re-save its state_dict with safetensors. '
            f'Underlying error: {str(e).splitlines()[0]}') from None


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _message_hub_state_dict(original):

    def state_dict(self):
        state = original(self)
        scalars = {}
        for key, buffer in state.get('log_scalars', {}).items():
            log, count = buffer.data
            scalars[key] = {
                _HISTORY_BUFFER_TAG: True,
                'log': [float(v) for v in log],
                'count': [int(c) for c in count],
                'max_length': buffer.max_length,
            }
        state['log_scalars'] = scalars
        state['runtime_info'] = {
            k: _plain(v)
            for k, v in state.get('runtime_info', {}).items()
        }
        return state

    return state_dict


def _message_hub_load_state_dict(original):
    from mmengine.logging import HistoryBuffer

    def load_state_dict(self, state_dict):
        scalars = state_dict.get('log_scalars', {})
        for key, value in list(scalars.items()):
            if isinstance(value, dict) and value.get(_HISTORY_BUFFER_TAG):
                scalars[key] = HistoryBuffer(value['log'], value['count'],
                                             value['max_length'])
        return original(self, state_dict)

    return load_state_dict


# 2. atomic checkpoint writes --------------------------------------------------
def _atomic_save_checkpoint(original):

    def save_checkpoint(checkpoint, filename, *args, **kwargs):
        if '://' in str(filename):
            return original(checkpoint, filename, *args, **kwargs)
        atomic_write(filename,
                     lambda tmp: original(checkpoint, tmp, *args, **kwargs))

    return save_checkpoint


def _fresh_randomness(init):
    """Give every Runner its own ``randomness`` dict.

    The default ``randomness=dict(seed=None)`` is one dict shared by all
    Runners, and ``resume`` writes the restored seed into it, so a later
    Runner in the same process would silently inherit that seed.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if 'randomness' not in signature.bind_partial(self, *args,
                                                      **kwargs).arguments:
            kwargs['randomness'] = dict(seed=None)
        init(self, *args, **kwargs)

    return __init__


# 3. pkg_resources-free package helpers ----------------------------------------
def is_installed(package):
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def get_installed_path(package):
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f'package {package} is not installed')
    return osp.dirname(spec.origin)


# 4. DeepSpeed optimiser registration -------------------------------------------
def register_deepspeed_optimizers():
    """Register the DeepSpeed optimisers that this DeepSpeed version has."""
    from mmengine.registry import OPTIMIZERS
    registered = []
    candidates = {
        'deepspeed.ops.adam': ('DeepSpeedCPUAdam', 'FusedAdam'),
        'deepspeed.ops.lamb': ('FusedLamb', ),
        'deepspeed.runtime.fp16.onebit': ('OnebitAdam', 'OnebitLamb',
                                          'ZeroOneAdam'),
    }
    for module_name, names in candidates.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            if hasattr(module, name):
                OPTIMIZERS.register_module(
                    module=getattr(module, name), force=True)
                registered.append(name)
    return registered


def apply():
    """Install every fix; safe to call more than once."""
    global _APPLIED
    if _APPLIED:
        return
    import mmengine.config.config as mm_config
    import mmengine.runner.checkpoint as mm_checkpoint
    import mmengine.runner.runner as mm_runner
    import mmengine.utils as mm_utils
    import mmengine.utils.package_utils as mm_package_utils
    from mmengine.logging import MessageHub

    mm_checkpoint.CheckpointLoader.register_scheme(
        prefixes='', force=True)(load_local_checkpoint)
    MessageHub.state_dict = _message_hub_state_dict(MessageHub.state_dict)
    MessageHub.load_state_dict = _message_hub_load_state_dict(
        MessageHub.load_state_dict)
    # save_checkpoint is reached by several names: Runner (imported into
    # mmengine.runner.runner), CheckpointHook (from mmengine.runner) and the
    # FlexibleRunner strategies (from mmengine.runner.checkpoint).
    import mmengine.runner as mm_runner_package
    atomic_save = _atomic_save_checkpoint(mm_checkpoint.save_checkpoint)
    for module in (mm_checkpoint, mm_runner, mm_runner_package):
        module.save_checkpoint = atomic_save
    # find_latest_checkpoint: Runner, FlexibleRunner and the strategies
    # (which import it from mmengine.runner when they resume).
    import mmengine.runner._flexible_runner as mm_flexible_runner
    for module in (mm_runner, mm_flexible_runner, mm_runner_package):
        module.find_latest_checkpoint = find_latest_checkpoint
    mm_runner.Runner.__init__ = _fresh_randomness(mm_runner.Runner.__init__)

    import mmengine.hub.hub as mm_hub
    for module in (mm_package_utils, mm_utils, mm_config, mm_hub):
        module.is_installed = is_installed
        module.get_installed_path = get_installed_path

    try:
        import mmengine._strategy.deepspeed as mm_deepspeed
        mm_deepspeed.register_deepspeed_optimizers = \
            register_deepspeed_optimizers
        mm_deepspeed.save_checkpoint = atomic_save
    except ImportError:
        pass

    for pattern in (r'.*FileClient.* will be deprecated',
                    r'.*HardDiskBackend.* is the alias',
                    r'.*broadcast_buffers is deprecated'):
        warnings.filterwarnings('ignore', message=pattern)
    _APPLIED = True
