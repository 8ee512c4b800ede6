"""The toy study of docs/toy_study.md: run its arms over seeds, tabulate.

    python projects/janus_toy/study.py run --arms reca control \\
        --seeds 0 1 2 --jobs 2 --out work_dirs/toy_study
    python projects/janus_toy/study.py table --out work_dirs/toy_study \\
        [--arms ...] [--against ARM]

Each run is ``tools/train.py`` on the arm's config with ``randomness.seed``
and the GenEval-Shapes sampling seed set from the study seed, one CPU thread
each; it writes ``<out>/<arm>/seed_<s>/<timestamp>/before_after.json``
(``BeforeAfterValHook``). Finished runs are skipped, so an interrupted study
continues. The "baseline" column is the pretrained checkpoint, i.e. every
run's "before" score of the same seed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECA = 'configs/reca/janus_toy.py'
CONTROL = 'projects/janus_toy/configs/control.py'
REPLAY = 'projects/janus_toy/configs/reca_replay.py'
RECON = 'train_dataloader.dataset.sources.recon'
T2I = 'train_dataloader.dataset.sources.t2i'
# arm -> (config, --cfg-options)
ARMS = {
    # RecA as the authors run it (recon + i2t 1:1), and its control
    'reca': (RECA, []),
    'control': (CONTROL, []),
    # the control on dense captions that name everything: what text alone
    # teaches when the captions do carry the details
    'dense_captions': (CONTROL, [f'{T2I}.sparse=None',
                                 f'{T2I}.unnamed_held_out=False']),
    # RecA with text-to-image replay (recon:t2i:i2t 1:1:1, batch 48), and
    # its control (t2i:i2t 2:1, batch 48)
    'reca_replay': (REPLAY, []),
    'control_replay': (CONTROL, ['train_dataloader.batch_size=48',
                                 'train_dataloader.sampler.ratios.t2i=2']),
    # the bottleneck: understanding view 64 px (16 tokens, one per slot)
    # or 16 px (1 token); 32 px (4 tokens) is the default
    'und64': (RECA, [f'{RECON}.pipeline.1.und_size=64']),
    'und16': (RECA, [f'{RECON}.pipeline.1.und_size=16']),
    # instruction pool: one instruction instead of 345
    'pool1': (RECA, ['model.objectives.recon.generic_prob=1.0']),
    # recon:i2t at the same batch of 32
    'ratio3to1': (RECA, ['train_dataloader.sampler.ratios.recon=3']),
    'ratio1to3': (RECA, ['train_dataloader.sampler.ratios.i2t=3']),
    'no_i2t': (RECA, ['train_dataloader.sampler.ratios.i2t=0']),
}
# what each arm's paired difference is taken from; others: the baseline
COMPARED_WITH = dict(reca='control', dense_captions='control',
                     reca_replay='control_replay',
                     **{arm: 'reca' for arm in ('und64', 'und16', 'pool1',
                                                'ratio3to1', 'ratio1to3',
                                                'no_i2t')})
TAGS = ('single_object', 'two_object', 'counting', 'colors', 'position',
        'color_attr', 'overall')
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
       7: 2.365, 8: 2.306, 9: 2.262}  # two-sided 95% Student t quantiles


def result_file(out, arm, seed):
    found = sorted((out / arm / f'seed_{seed}').glob('*/before_after.json'))
    return found[-1] if found else None


def run_one(out, arm, seed, extra):
    if result_file(out, arm, seed):
        return f'{arm} seed {seed}: done before'
    config, options = ARMS[arm]
    work_dir = out / arm / f'seed_{seed}'
    options = options + [f'randomness.seed={seed}',
                         f'val_dataloader.dataset.seed={1000 * seed}'] + extra
    command = [sys.executable, 'tools/train.py', config, '--work-dir',
               str(work_dir), '--cfg-options', *options]
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               HF_HUB_OFFLINE='1')
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / 'stdout.log', 'w') as log:
        code = subprocess.call(command, cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    if code:
        raise RuntimeError(f'{arm} seed {seed} failed ({code}); see '
                           f'{work_dir / "stdout.log"}')
    return f'{arm} seed {seed}: finished'


def mean_ci(values):
    """Mean and half-width of its 95% Student-t interval over seeds."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float('nan')
    half = T95[len(values) - 1] * statistics.stdev(values) / len(values) ** .5
    return mean, half


def scores(out, arm, seeds, which='after'):
    rows = {}
    for seed in seeds:
        path = result_file(out, arm, seed)
        if path:
            data = json.loads(path.read_text())[which]
            rows[seed] = {t: data[f'geneval_shapes/{t}'] for t in TAGS}
    return rows


def table(out, arms, seeds, against=None):
    """Markdown: per tag mean ± CI per arm; then each arm's paired
    difference from ``against``, by default from :data:`COMPARED_WITH`."""
    columns = {'baseline': scores(out, arms[0], seeds, 'before')}
    columns.update({arm: scores(out, arm, seeds) for arm in arms})
    head = '| tag | ' + ' | '.join(
        f'{a} (n={len(columns[a])})' for a in columns) + ' |'
    lines = [head, '|' + '---|' * (len(columns) + 1)]
    for tag in TAGS:
        cells = []
        for rows in columns.values():
            m, h = mean_ci([r[tag] for r in rows.values()])
            cells.append(f'{m:.3f} ± {h:.3f}')
        lines.append(f'| {tag} | ' + ' | '.join(cells) + ' |')
    pairs = [(arm, against or COMPARED_WITH.get(arm, 'baseline'))
             for arm in arms]
    pairs = [(arm, ref) for arm, ref in pairs
             if ref != arm and ref in columns]
    if pairs:
        lines += ['', 'Paired differences (same seeds):', '',
                  '| tag | ' + ' | '.join(f'{a} − {r}' for a, r in pairs)
                  + ' |', '|' + '---|' * (len(pairs) + 1)]
        for tag in TAGS:
            cells = []
            for arm, ref in pairs:
                rows, base = columns[arm], columns[ref]
                diffs = [rows[s][tag] - base[s][tag]
                         for s in rows if s in base]
                m, h = mean_ci(diffs) if diffs else (float('nan'),) * 2
                cells.append(f'{m:+.3f} ± {h:.3f}')
            lines.append(f'| {tag} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('action', choices=['run', 'table'])
    parser.add_argument('--arms', nargs='+', default=['reca', 'control'],
                        choices=sorted(ARMS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs in parallel, one CPU thread each')
    parser.add_argument('--out', type=Path,
                        default=Path('work_dirs/toy_study'))
    parser.add_argument('--against',
                        help='arm (or baseline) for every paired difference; '
                        'default: each arm\'s own (COMPARED_WITH)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra overrides for every run of this call')
    args = parser.parse_args()
    out = args.out.resolve()
    if args.action == 'run':
        runs = [(arm, seed) for seed in args.seeds for arm in args.arms]
        with ThreadPoolExecutor(args.jobs) as pool:
            for message in pool.map(
                    lambda r: run_one(out, *r, args.cfg_options), runs):
                print(message, flush=True)
    print(table(out, args.arms, args.seeds, args.against))


if __name__ == '__main__':
    main()
