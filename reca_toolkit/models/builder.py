"""Building components that wrap parts of an already-loaded model."""
import inspect

from mmengine.config import ConfigDict


def build_component(registry, cfg, **parts):
    """Build ``cfg`` from ``registry``, handing it the ``parts`` it accepts.

    An adapter loads one model and builds its encoders and generator around
    that model's modules. Each component takes only the modules its
    constructor names, so a config can swap in a component that needs
    different ones (a patch tokenizer in place of a VQ-VAE, say).
    """
    cfg = ConfigDict(cfg)
    cls = registry.get(cfg['type']) if isinstance(cfg['type'], str) \
        else cfg['type']
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    default_args = {
        name: module
        for name, module in parts.items() if takes_any or name in accepted
    }
    return registry.build(cfg, default_args=default_args)
