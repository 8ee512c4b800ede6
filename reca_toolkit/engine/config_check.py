"""Check a config before anything is built or written.

Every ``type`` must be registered and every key must be an argument of the
class it configures; errors name the key's path and the closest valid names.
A class may also define ``validate_config(cfg)`` to check what it will read
from disk (a weights folder, an image folder). The Runner would otherwise
create the work directory and logs first, fail later, and silently ignore a
misspelt top-level key.
"""
import difflib
import inspect

from mmengine.runner import Runner

import reca_toolkit.registry as registries
from reca_toolkit.registry import Registry

# Keys that builders pop before the constructor sees the rest.
BUILDER_KEYS = {'type', '_scope_', 'constructor', 'paramwise_cfg',
                'convert_to_iter_based'}
RUNNER_KEYS = set(inspect.signature(Runner.__init__).parameters) | {
    'model_wrapper_cfg', 'custom_imports', 'runner_type', 'strategy',
    'compile', 'log_level'}


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
        params = inspect.signature(target).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            valid = set(params) | BUILDER_KEYS
            for key in node:
                if key not in valid:
                    close = _close(key, params)
                    raise ConfigError(
                        f"{path}: '{key}' is not an argument of {kind}"
                        + (f"; did you mean {', '.join(close)}?" if close
                           else '') + f' Valid keys: {sorted(params)}')
        validate = getattr(target, 'validate_config', None)
        if resources and validate is not None:
            try:
                validate(node)
            except (FileNotFoundError, ValueError) as e:
                raise ConfigError(f'{path}: {e}') from None
    for key, value in node.items():
        _check_node(value, f'{path}.{key}' if path else key, resources)


def check_config(cfg, resources=True):
    """Raise :class:`ConfigError` for unknown types and keys in ``cfg`` and,
    with ``resources``, for folders and files it names that are missing."""
    for key in cfg:
        if key not in RUNNER_KEYS:
            # Strict, so helper variables (data_root, ...) are not flagged.
            close = _close(key, RUNNER_KEYS, cutoff=0.8)
            if close:
                raise ConfigError(
                    f"top-level key '{key}' is not a Runner setting; did you "
                    f"mean {', '.join(close)}?")
    _check_node(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg), '',
                resources)
