"""Evaluate a checkpoint with a config's test loop and metrics, or re-run
the evaluation an evaluation card records.

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR]
        [--cfg-options key=value ...] [--launcher {none,pytorch,slurm}]
    python tools/test.py --card work_dirs/.../eval_card.json [--work-dir DIR]

Every run writes ``eval_card.json`` (all settings, hashes and metrics) into
its log directory. Without CHECKPOINT the model is evaluated as the config
builds it.
"""
import argparse
import os
import sys
from pathlib import Path

from mmengine.config import DictAction

# projects/ live in the repository: make `projects.<name>` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint to evaluate')
    parser.add_argument('--card', help='re-run this evaluation card')
    parser.add_argument('--work-dir', help='where logs and results go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.card and (args.config or args.checkpoint or args.cfg_options):
        parser.error('--card re-runs the card as recorded; give no CONFIG, '
                     'CHECKPOINT or --cfg-options with it')
    if not args.card and not args.config:
        parser.error('give CONFIG [CHECKPOINT] or --card CARD.json')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from reca_toolkit.engine import test
    metrics = test(args.config, args.checkpoint, work_dir=args.work_dir,
                   cfg_options=args.cfg_options, launcher=args.launcher,
                   card=args.card)
    print(metrics)


if __name__ == '__main__':
    main()
