"""Building scorers from configs, and describing them for evaluation cards.

A metric takes a scorer as a ``SCORERS`` config (``dict(type='MMDetDetector',
...)``) or as an already built object (tests inject fakes this way), and
builds it lazily -- on first use, not in ``__init__`` -- so a config that
names a scorer builds and checks anywhere, and a package such as mmdet is
imported only where the scorer actually runs.
"""
from reca_toolkit.registry import SCORERS


def build_scorer(cfg):
    """A scorer from its config; objects that are not dicts pass through."""
    if cfg is None or not isinstance(cfg, dict):
        return cfg
    return SCORERS.build(cfg)


def scorer_info(scorer, cfg):
    """What a card records about a scorer: its config and, once built, what
    the scorer says about itself (package versions, weight hashes)."""
    if scorer is None and cfg is None:
        return None
    info = dict(config=cfg if isinstance(cfg, dict) else
                type(cfg).__name__)
    describe = getattr(scorer, 'info', None)
    if callable(describe):
        info.update(describe())
    return info
