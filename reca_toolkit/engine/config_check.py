"""Check a config before anything is built or written.

Every ``type`` must be registered and every key must be an argument of the
class it configures -- for a class that takes ``**kwargs``, an argument of
what it passes them to -- and so must the keys of the dicts the Runner
builds without a ``type`` (dataloaders, loops, randomness). The common
numeric keys (``lr``, ``max_iters``, ``batch_size``, ...) must hold numbers.
Errors name the key's path, its value and the closest valid names. A class
may also define ``validate_config(cfg)`` to check what it will read from
disk (a weights folder, an image folder), and every local ``.safetensors``
file a config names (directly or in a ``pretrained`` folder) must have a
whole header. The Runner would otherwise create the work directory and logs
first, fail later -- a misspelt CheckpointHook argument only at the first
save, after hours of training -- and silently ignore a misspelt top-level
key.
"""
import difflib
import inspect
import json
import os
from pathlib import Path

from mmengine.hooks import CheckpointHook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, Runner
from mmengine.runner.loops import TestLoop, ValLoop
from mmengine.optim import OptimWrapper
from torch.nn.utils import clip_grad_norm_, clip_grad_value_
from torch.utils.data import DataLoader

import reca_toolkit.registry as registries
from reca_toolkit.registry import Registry

# Keys that builders pop before the constructor sees the rest.
BUILDER_KEYS = {'type', '_scope_', 'constructor', 'paramwise_cfg',
                'convert_to_iter_based'}
RUNNER_KEYS = set(inspect.signature(Runner.__init__).parameters) | {
    'model_wrapper_cfg', 'custom_imports', 'runner_type', 'strategy',
    'compile', 'log_level'}
# Where a class's **kwargs go when not to its base class's __init__, and the
# arguments it passes there itself. CheckpointHook forwards them to
# Runner.save_checkpoint, which takes nothing more than the hook passes.
KWARGS_FORWARDED_TO = {
    CheckpointHook: (Runner.save_checkpoint, {
        'self', 'out_dir', 'filename', 'file_client_args', 'save_optimizer',
        'save_param_scheduler', 'meta', 'by_epoch', 'backend_args'}),
}
_DATALOADER = (DataLoader,
               {'num_batch_per_epoch', 'disable_subprocess_warning'})
# Top-level dicts the Runner builds without a ``type``: what their keys are
# arguments of, and the keys the Runner takes out first.
UNTYPED = {
    'train_dataloader': _DATALOADER,
    'val_dataloader': _DATALOADER,
    'test_dataloader': _DATALOADER,
    'randomness': (Runner.set_randomness, set()),
    'val_cfg': (ValLoop, set()),
    'test_cfg': (TestLoop, set()),
}
# The loop a train_cfg without ``type`` builds, by its ``by_epoch``.
TRAIN_LOOPS = {True: EpochBasedTrainLoop, False: IterBasedTrainLoop}
# Arguments the Runner passes its loops itself.
LOOP_ARGS = {'self', 'runner', 'dataloader', 'evaluator'}
# Keys whose values must be numbers wherever they are, and which kind.
INTEGER_KEYS = {'max_iters', 'max_epochs', 'batch_size', 'num_workers',
                'interval', 'val_interval', 'val_begin', 'max_keep_ckpts',
                'save_begin', 'window_size', 'accumulative_counts',
                'max_nonfinite_steps'}
NUMBER_KEYS = {'lr', 'weight_decay', 'momentum', 'eps', 'max_norm',
               'eta_min', 'start_factor', 'end_factor', 'factor'}


class ConfigError(ValueError):
    """A config that names something that does not exist."""


def _registries():
    found = [r for r in vars(registries).values() if isinstance(r, Registry)]
    unique = list({id(r): r for r in found}.values())
    for registry in unique:
        registry.import_from_location()
    return unique


def _lookup(name):
    scope, _, short = name.rpartition('.')
    if scope not in ('', 'reca_toolkit', 'mmengine'):
        # Another package's scope, or a dotted import path.
        return next((Registry.get(r, name) for r in _registries()
                     if Registry.get(r, name) is not None), None)
    for registry in _registries():
        for node in (registry, registry.parent):
            if node is not None and short in node.module_dict:
                return node.module_dict[short]
    return None


def _all_names():
    names = set()
    for registry in _registries():
        names.update(registry.module_dict)
        if registry.parent is not None:
            names.update(registry.parent.module_dict)
    return names


def _close(word, names, cutoff=0.6):
    return difflib.get_close_matches(word, sorted(names), n=3, cutoff=cutoff)


def _keywords(function):
    """Keyword parameter names of ``function``, and whether it has
    ``**kwargs``."""
    params = inspect.signature(function).parameters.values()
    keywords = {p.name for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return keywords, any(p.kind is p.VAR_KEYWORD for p in params)


def accepted_keys(target):
    """The keyword arguments a call of ``target`` accepts, following
    ``**kwargs`` up the base classes' ``__init__`` or to where
    :data:`KWARGS_FORWARDED_TO` says they go; None if that ends nowhere
    checkable (a ``**kwargs`` that reaches ``object``)."""
    if not inspect.isclass(target):
        names, var = _keywords(target)
        return None if var else names
    accepted, forwarding = set(), False
    for cls in target.__mro__:
        if cls is object:
            # object() takes no arguments, but who knows what a **kwargs
            # that ends here was for.
            return None if forwarding else accepted
        if '__init__' not in vars(cls):
            continue
        names, forwarding = _keywords(cls.__init__)
        accepted |= names - {'self'}
        if not forwarding:
            return accepted
        if cls in KWARGS_FORWARDED_TO:
            function, passed = KWARGS_FORWARDED_TO[cls]
            names, forwarding = _keywords(function)
            return None if forwarding else accepted | (names - passed)


def _check_keys(node, path, valid, what):
    for key, value in node.items():
        if key not in valid:
            close = _close(key, valid)
            raise ConfigError(
                f"{path}: '{key}' is not an argument of {what} (given "
                f'{key}={value!r})'
                + (f"; did you mean {', '.join(close)}?" if close else '')
                + f' Valid keys: {sorted(valid)}')


def _check_clip_grad(clip, path):
    """``OptimWrapper(clip_grad=...)``: the arguments of torch's clipping
    function that its ``type`` picks, less the parameters."""
    function = clip_grad_value_ if clip.get('type') == 'value' \
        else clip_grad_norm_
    _check_keys(clip, path, (accepted_keys(function) - {'parameters'})
                | {'type'}, function.__name__)


def _check_value(key, value, path):
    if key in INTEGER_KEYS:
        kind, ok = 'an integer', isinstance(value, int)
    elif key in NUMBER_KEYS:
        kind, ok = 'a number', isinstance(value, (int, float))
    else:
        return
    if ok and not isinstance(value, bool):
        return
    hint = ''
    if isinstance(value, str):
        try:
            number = float(value)
            hint = f'; write {value} without quotes'
            if kind == 'an integer' and not number.is_integer():
                hint = ''
        except ValueError:
            pass
    raise ConfigError(f'{path} = {value!r} is a {type(value).__name__}; '
                      f'{key} must be {kind}{hint}')


def safetensors_problem(path):
    """What is wrong with a ``.safetensors`` file's header, or None: an
    8-byte little-endian length, that much JSON, then exactly the tensor
    bytes the JSON's offsets describe."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        length = int.from_bytes(f.read(8), 'little')
        if size < 8 or 8 + length > size:
            return (f'it is {size} bytes, too short for its header: '
                    'truncated')
        try:
            header = json.loads(f.read(length))
            end = max((int(t['data_offsets'][1]) for k, t in header.items()
                       if k != '__metadata__'), default=0)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            return f'its header is not valid: {type(e).__name__}: {e}'
    if 8 + length + end != size:
        return (f'it is {size} bytes, its header describes {8 + length + end}'
                ': truncated or corrupt')
    return None


def _check_safetensors(key, value, path):
    """Local safetensors that ``key = value`` names: a file, or the
    ``pretrained`` folder holding them."""
    if not isinstance(value, str) or '://' in value:
        return
    if value.endswith('.safetensors') and os.path.isfile(value):
        files = [Path(value)]
    elif key == 'pretrained' and os.path.isdir(value):
        files = sorted(Path(value).glob('*.safetensors'))
    else:
        return
    for file in files:
        problem = safetensors_problem(file)
        if problem:
            raise ConfigError(f"{path} = {value!r}: '{file}' is not a whole "
                              f'safetensors file ({problem}); copy it again')


def _check_node(node, path, resources):
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            _check_node(item, f'{path}[{i}]', resources)
        return
    if not isinstance(node, dict):
        return
    kind = node.get('type')
    if isinstance(kind, str):
        target = _lookup(kind)
        if target is None:
            close = _close(kind, _all_names())
            raise ConfigError(
                f"{path}: type='{kind}' is not registered"
                + (f"; did you mean {', '.join(close)}?" if close else ''))
        valid = accepted_keys(target)
        if valid is not None:
            _check_keys(node, path, valid | BUILDER_KEYS, kind)
        if inspect.isclass(target) and issubclass(target, OptimWrapper) \
                and isinstance(node.get('clip_grad'), dict):
            _check_clip_grad(node['clip_grad'], f'{path}.clip_grad')
        validate = getattr(target, 'validate_config', None)
        if resources and validate is not None:
            try:
                validate(node)
            except (FileNotFoundError, ValueError) as e:
                raise ConfigError(f'{path}: {e}') from None
    for key, value in node.items():
        child = f'{path}.{key}' if path else key
        if path:        # top-level helper variables are the config's own
            _check_value(key, value, child)
        if resources:
            _check_safetensors(key, value, child)
        _check_node(value, child, resources)


def _check_untyped(cfg):
    """The keys of the top-level dicts the Runner builds without a type."""
    for key, value in cfg.items():
        if not isinstance(value, dict) or 'type' in value:
            continue
        if key in UNTYPED:
            target, extra = UNTYPED[key]
        elif key == 'train_cfg' and 'by_epoch' in value:
            target, extra = TRAIN_LOOPS[bool(value['by_epoch'])], {'by_epoch'}
        else:
            continue
        valid = (accepted_keys(target) - LOOP_ARGS) | extra
        name = getattr(target, '__qualname__', target.__name__)
        _check_keys(value, key, valid, name)


def check_config(cfg, resources=True):
    """Raise :class:`ConfigError` for unknown types and keys, and values of
    the wrong type, in ``cfg`` and, with ``resources``, for folders and
    files it names that are missing or cut short."""
    for key in cfg:
        if key not in RUNNER_KEYS:
            # Strict, so helper variables (data_root, ...) are not flagged.
            close = _close(key, RUNNER_KEYS, cutoff=0.8)
            if close:
                raise ConfigError(
                    f"top-level key '{key}' is not a Runner setting; did you "
                    f"mean {', '.join(close)}?")
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    _check_untyped(cfg)
    _check_node(cfg, '', resources)
