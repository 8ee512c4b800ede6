"""What every tools/eval command shares: its arguments and the call into
``reca_toolkit.engine.test``, which writes the evaluation card."""
import argparse
import os
import sys
from pathlib import Path

from mmengine.config import DictAction

# projects/ live in the repository: make `projects.<name>` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parser(doc):
    p = argparse.ArgumentParser(
        description=doc.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument('config', help='model + benchmark config (configs/eval)')
    p.add_argument('checkpoint', nargs='?',
                   help='trained checkpoint; omit to evaluate the config\'s '
                   'pretrained weights')
    p.add_argument('--out', required=True,
                   help='work directory: images, results, evaluation card')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    p.add_argument('--launcher', default='none',
                   choices=['none', 'pytorch', 'slurm'])
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return p


def run(args, given, overrides=None):
    """Evaluate and print the metrics.

    Args:
        given: dotted config keys from the tool's flags; None means the flag
            was not given and the config's value stands.
        overrides: dotted config keys set as they are (None included, to
            switch a scorer off).

    ``--cfg-options`` wins over both.
    """
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    from reca_toolkit.engine import test
    options = {k: v for k, v in given.items() if v is not None}
    options.update(overrides or {})
    options.update(args.cfg_options or {})
    metrics = test(args.config, args.checkpoint, work_dir=args.out,
                   cfg_options=options, launcher=args.launcher)
    for key, value in metrics.items():
        print(f'{key:<40} {value}')
    return metrics
