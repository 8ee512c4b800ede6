"""Estimate a config's GPU memory before launching it: parameters, weights,
gradients, optimizer states, activations, fits or not.

    python tools/analysis_tools/estimate.py CONFIG [--gpu-mem GIB]
        [--batch-size N] [--num-gpus N] [--json OUT]
        [--cfg-options key=value ...]

Builds the model on the meta device from its architecture alone (no weights,
no GPU; a missing weights folder is replaced by the published architecture:
checkpoints/Janus-Pro-* by its name, Harmon by its ``variant``) and runs one
training step there. The method and what it leaves out:
reca_toolkit/engine/memory_estimate.py.
"""
import argparse
import json
import os
import sys
from pathlib import Path

from mmengine.config import DictAction

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--gpu-mem', type=float, default=80.0,
                        help='GPU memory in GiB (default 80)')
    parser.add_argument('--batch-size', type=int,
                        help='per-GPU batch size (default: the config\'s)')
    parser.add_argument('--num-gpus', type=int, default=1,
                        help='GPUs of the run: FSDP configs shard over them '
                        '(over strategy.num_shards of them with HYBRID_SHARD)')
    parser.add_argument('--json', help='also write the estimate here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from reca_toolkit.engine import load_config
    from reca_toolkit.engine.memory_estimate import (estimate_memory,
                                                     format_estimate)
    from reca_toolkit.utils import register_all_modules
    register_all_modules()
    cfg = load_config(args.config, args.cfg_options, check_resources=False)
    estimate = estimate_memory(cfg, args.batch_size, args.num_gpus,
                               args.gpu_mem)
    print(format_estimate(args.config, estimate))
    if args.json:
        Path(args.json).write_text(json.dumps(
            dict(estimate, config=args.config), indent=2))


if __name__ == '__main__':
    main()
