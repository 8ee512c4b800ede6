"""Evaluate a checkpoint with a config's test loop and metrics.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--cfg-options key=value ...] [--launcher {none,pytorch,slurm}]
"""
import argparse
import os

from mmengine.config import DictAction


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint to evaluate')
    parser.add_argument('--work-dir', help='where logs and results go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from reca_toolkit.engine import test
    metrics = test(args.config, args.checkpoint, work_dir=args.work_dir,
                   cfg_options=args.cfg_options, launcher=args.launcher)
    print(metrics)


if __name__ == '__main__':
    main()
