"""Measure a config's training throughput: step time, samples/s, tokens/s,
peak memory and MFU; with --compare, also the naive baseline.

    python tools/benchmark.py CONFIG [--batch-size N] [--iters N]
        [--warmup N] [--meta-init] [--compare] [--peak-tflops T]
        [--device DEV] [--loader-batches N] [--loader-only]
        [--cfg-options key=value ...] --json OUT

--meta-init builds the model on the meta device and gives it random weights
on the device: real-size throughput without the checkpoint. Batches are
synthetic, shaped like the config's. MFU needs the device's bf16 peak: known
for H100, H200 and A100, else give --peak-tflops. The naive baseline is the
config with eager attention, all logits at once, no compiled layers and an
unfused, non-foreach AdamW. The config's own dataloader is timed too, against
the samples a training step consumes (--loader-only: only that). Method
and FLOP count: reca_toolkit/engine/benchmark.py.
"""
import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

from mmengine.config import DictAction

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--batch-size', type=int,
                        help='per-device batch size (default: the config\'s)')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed steps')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed steps first')
    parser.add_argument('--meta-init', action='store_true',
                        help='build without weights (meta device, random '
                        'values)')
    parser.add_argument('--compare', action='store_true',
                        help='also time the naive baseline')
    parser.add_argument('--peak-tflops', type=float,
                        help='the device\'s dense bf16 peak, for MFU')
    parser.add_argument('--device', help='cuda or cpu (default: cuda if '
                        'available)')
    parser.add_argument('--loader-batches', type=int,
                        help='batches to time the dataloader on '
                        '(default: --iters)')
    parser.add_argument('--loader-only', action='store_true',
                        help='time only the config\'s dataloader')
    parser.add_argument('--json', required=True, help='results file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def summary(result):
    rows = [('', 'optimised', 'baseline')]
    runs = [result['optimised'], result.get('baseline')]

    def row(name, key, fmt):
        rows.append((name, *(fmt.format(r[key]) if r and r[key] is not None
                             else '-' for r in runs)))

    row('step time (s)', 'step_time_s', '{:.4f}')
    row('samples/s', 'samples_per_s', '{:.2f}')
    row('LLM tokens/s', 'tokens_per_s', '{:.0f}')
    row('achieved TFLOP/s', 'achieved_tflops', '{:.3f}')
    row('MFU', 'mfu', '{:.1%}')
    row('peak memory (GiB)', 'peak_memory_gib', '{:.2f}')
    lines = [f"{result['config']} on {result['device']}, batch "
             f"{result['batch_size']}, {result['model_tflop_per_sample']:.4g}"
             ' model TFLOP per sample']
    lines += ['  '.join(c.rjust(18) if i else c.ljust(20)
                        for i, c in enumerate(r)) for r in rows]
    if 'speedup_vs_baseline' in result:
        lines.append(f"speed-up over the baseline: "
                     f"{result['speedup_vs_baseline']:.2f}x")
    lines.append(loader_line(result['loader']))
    return '\n'.join(lines)


def loader_line(loader):
    if 'skipped' in loader:
        return f"dataloader not timed: {loader['skipped']}"
    line = (f"dataloader: {loader['samples_per_s']:.1f} samples/s with "
            f"{loader['num_workers']} workers")
    if 'ratio_to_step_consumption' in loader:
        line += (f", {loader['ratio_to_step_consumption']:.1f}x what a step "
                 'consumes')
    return line


def main():
    args = parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import torch

    from reca_toolkit.engine import load_config
    from reca_toolkit.engine.benchmark import (benchmark, device_name,
                                               loader_throughput)
    from reca_toolkit.utils import register_all_modules
    register_all_modules()
    cfg = load_config(args.config, args.cfg_options,
                      check_resources=not (args.meta_init or
                                           args.loader_only))
    result = dict(config=args.config,
                  command=shlex.join(['python', *sys.argv]))
    if args.loader_only:
        result.update(date=datetime.date.today().isoformat(),
                      device=device_name(torch.device('cpu')),
                      loader=loader_throughput(
                          cfg, args.loader_batches or args.iters))
    else:
        result.update(benchmark(
            cfg, batch_size=args.batch_size, iters=args.iters,
            warmup=args.warmup, meta_init=args.meta_init,
            compare=args.compare, peak=args.peak_tflops, device=args.device,
            loader_batches=args.loader_batches))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(loader_line(result['loader']) if args.loader_only
          else summary(result))


if __name__ == '__main__':
    main()
