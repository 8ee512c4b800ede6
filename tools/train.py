"""Train a reca_toolkit config.

    python tools/train.py configs/reca/janus_pro.py [--work-dir DIR]
        [--resume [auto|PATH] [--allow-no-checkpoint]] [--load-from PATH]
        [--amp] [--cfg-options key=value ...]
        [--launcher {none,pytorch,slurm}]

Exit status: 0 when training completed; 75 when SIGTERM or SIGUSR1 stopped
it after saving a checkpoint (tools/slurm_train.sh requeues the job on 75;
anywhere else, run the same command with --resume); 1 on an error.

Configs are Python files and are executed when loaded: run only configs you
trust.
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
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume', nargs='?', const='auto',
        help='resume from PATH, or from the newest complete checkpoint in '
        'the work directory when given without a value; an error if there '
        'is none')
    parser.add_argument(
        '--allow-no-checkpoint', action='store_true',
        help='with --resume: when there is no checkpoint, warn and start '
        'from scratch (for job scripts that always pass --resume)')
    parser.add_argument('--load-from', help='initialise from a checkpoint')
    parser.add_argument('--amp', action='store_true',
                        help='bf16 automatic mixed precision (GPU)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm'])
    # torch.distributed.launch passes --local-rank (torch >= 2) to scripts.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.allow_no_checkpoint and not args.resume:
        parser.error('--allow-no-checkpoint only applies with --resume')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from reca_toolkit.engine import EXIT_PREEMPTED, TrainingPreempted, train
    try:
        train(args.config, work_dir=args.work_dir, resume=args.resume,
              load_from=args.load_from, amp=args.amp,
              cfg_options=args.cfg_options, launcher=args.launcher,
              allow_no_checkpoint=args.allow_no_checkpoint)
    except TrainingPreempted:
        # Logged by the train loop, with the checkpoint it saved.
        sys.exit(EXIT_PREEMPTED)


if __name__ == '__main__':
    main()
