"""The toy study of docs/toy_study.md: run its arms on a toy over seeds,
score understanding before and after, tabulate.

    python projects/toy_study/study.py run --toy harmon --arms reca control \\
        --seeds 0 1 2 --jobs 1 --out work_dirs/toy_study_harmon
    python projects/toy_study/study.py table --toy harmon \\
        --out work_dirs/toy_study_harmon [--arms ...] [--against ARM]

A toy is a tiny pretrained UMM of ``projects/`` with three configs: its
RecA config, the equal-compute control and RecA with text-to-image replay
(:data:`TOYS`); every arm is one of them plus overrides (:func:`arms`), so
the arms mean the same on every toy. Each run is ``tools/train.py`` with
``randomness.seed`` and the GenEval-Shapes sampling seed set from the study
seed, one CPU thread each; it writes
``<out>/<arm>/seed_<s>/<timestamp>/before_after.json``
(``BeforeAfterValHook``). Toys in :data:`BATCHED_TOYS` train without
validation and are scored after training, the pretrained model and the
final checkpoint, by :func:`geneval` (the same prompts and metric, prompts
in batches), into ``<out>/<arm>/seed_<s>/batched/before_after.json``.
The run's final checkpoint then describes
:data:`UNDERSTANDING_SCENES` (image-to-text, greedy), scored by
``DescriptionAccuracyMetric`` into ``<out>/<arm>/seed_<s>/understanding.json``;
the pretrained checkpoint's score is ``<out>/understanding_before.json``.
``projects/toy_study/probe.py`` probes what the final checkpoint's
generation reads into ``<out>/<arm>/seed_<s>/probe.json`` (with the arm's
understanding view), the pretrained model's into ``<out>/probe_before.json``
(the toy's RecA config's view). Every run and the pretrained model are
also scored by :func:`geneval` with each image generated from the next
row's prompt (``prompt_shift=1``: ``geneval_shifted.json``,
``<out>/geneval_shifted_before_seed_<s>.json``), the score a generator
gets without reading its prompt. Finished runs and scores are skipped, so an
interrupted study continues, and ``run`` over finished runs adds only the
scores they lack.
The "baseline" column is the pretrained checkpoint, i.e. every run's
"before" score of the same seed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Run as a script, the configs' custom_imports import `projects.*` from the
# repository root.
sys.path.insert(0, str(REPO))

# toy -> its RecA config, equal-compute control, RecA with replay
TOYS = {
    'janus': dict(reca='configs/reca/janus_toy.py',
                  control='projects/janus_toy/configs/control.py',
                  replay='projects/janus_toy/configs/reca_replay.py'),
    'harmon': dict(reca='projects/harmon_toy/configs/reca.py',
                   control='projects/harmon_toy/configs/control.py',
                   replay='projects/harmon_toy/configs/reca_replay.py'),
}
# Toys scored after training, prompts in batches (:func:`geneval`), not by
# the run's own validation: RecAModel samples each prompt alone, and MAR at
# the Harmon toy's 500 diffusion steps takes 2 s a prompt alone, 0.4 s in a
# batch of 20. Their runs train without validation.
BATCHED_TOYS = ('harmon', )
NO_VALIDATION = ['val_dataloader=None', 'val_evaluator=None', 'val_cfg=None',
                 'custom_hooks=[]']
# Toys whose understanding view can be narrower than the generation view.
# Harmon's understanding runs the MAR encoder on the generation latents, so
# its view is the generation view.
BOTTLENECK_TOYS = ('janus', )
RECON = 'train_dataloader.dataset.sources.recon'
# The GenEval-Shapes prompts of the toys' validation (configs/reca/
# janus_toy.py: prompts, then held-out scenes to describe).
PROMPTS = 'val_dataloader.dataset.datasets.0'
T2I = 'train_dataloader.dataset.sources.t2i'
# Each image from the next row's prompt, scored against its own row.
SHIFTED = f'{PROMPTS}.prompt_shift=1'
# what each arm's paired difference is taken from; others: the baseline
ABLATIONS = ('und64', 'und16', 'pool1', 'ratio3to1', 'ratio1to3', 'no_i2t')
COMPARED_WITH = dict(reca='control', dense_captions='control',
                     reca_replay='control_replay',
                     **{arm: 'reca' for arm in ABLATIONS})
TAGS = ('single_object', 'two_object', 'counting', 'colors', 'position',
        'color_attr', 'overall')
# Held-out scenes for understanding: a stream no run trains on (training
# uses seeds 0-3), every colour-shape pair; the probe's scenes.
UNDERSTANDING_SCENES = dict(num_scenes=128, seed=99, include_held_out=True)
UNDERSTANDING_KEYS = ('accuracy', 'object_f1', 'held_out_recall',
                      'train_recall')
PROBE_SCENES = 512
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
       7: 2.365, 8: 2.306, 9: 2.262}  # two-sided 95% Student t quantiles


def arms(toy):
    """arm -> (config, --cfg-options) for ``toy``."""
    configs = TOYS[toy]
    reca, control = configs['reca'], configs['control']
    table = {
        # RecA as the authors run it (recon + i2t 1:1), and its control
        'reca': (reca, []),
        'control': (control, []),
        # the control on dense captions that name everything: what text
        # alone teaches when the captions do carry the details
        'dense_captions': (control, [f'{T2I}.sparse=None',
                                     f'{T2I}.unnamed_held_out=False']),
        # RecA with text-to-image replay (recon:t2i:i2t 1:1:1, batch 48),
        # and its control (t2i:i2t 2:1, batch 48)
        'reca_replay': (configs['replay'], []),
        'control_replay': (control, ['train_dataloader.batch_size=48',
                                     'train_dataloader.sampler.ratios.t2i=2']),
        # instruction pool: one instruction instead of 345
        'pool1': (reca, ['model.objectives.recon.generic_prob=1.0']),
        # recon:i2t at the same batch of 32
        'ratio3to1': (reca, ['train_dataloader.sampler.ratios.recon=3']),
        'ratio1to3': (reca, ['train_dataloader.sampler.ratios.i2t=3']),
        'no_i2t': (reca, ['train_dataloader.sampler.ratios.i2t=0']),
    }
    if toy in BOTTLENECK_TOYS:
        # the bottleneck: understanding view 64 px (16 tokens, one per slot)
        # or 16 px (1 token); 32 px (4 tokens) is the default
        table['und64'] = (reca, [f'{RECON}.pipeline.1.und_size=64'])
        table['und16'] = (reca, [f'{RECON}.pipeline.1.und_size=16'])
    return table


# Runs train in parallel subprocesses, but score in this process one at a
# time: two threads building models at once race in diffusers' lazy imports
# ("cannot import name 'AutoencoderKL' from 'diffusers'", seen once).
SCORING = threading.Lock()


def result_file(out, arm, seed):
    found = sorted((out / arm / f'seed_{seed}').glob('*/before_after.json'))
    return found[-1] if found else None


def run_one(out, toy, arm, seed, extra):
    work_dir = out / arm / f'seed_{seed}'
    config, options = arms(toy)[arm]
    batched = toy in BATCHED_TOYS
    if result_file(out, arm, seed) or batched and any(
            work_dir.glob('iter_*.pth')):
        # (A batched toy's run is scored after training: its checkpoint,
        # written once at the end, says the training finished.)
        message = f'{arm} seed {seed}: trained before'
    else:
        options = options + [f'randomness.seed={seed}',
                             f'{PROMPTS}.seed={1000 * seed}'
                             ] + extra + (NO_VALIDATION if batched else [])
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
        message = f'{arm} seed {seed}: finished'
    checkpoints = sorted(work_dir.glob('iter_*.pth'),
                         key=lambda p: int(p.stem.split('_')[1]))
    with SCORING:
        score_run(out, toy, arm, seed, config, work_dir, checkpoints,
                  batched, extra)
    return message


def score_run(out, toy, arm, seed, config, work_dir, checkpoints, batched,
              extra):
    """A finished run's GenEval-Shapes (batched toys), shifted-prompt
    GenEval-Shapes, understanding and probe scores, each kept once
    written."""
    if checkpoints and batched and not result_file(out, arm, seed):
        # The "before" of this seed is the pretrained model's, once.
        before = cached(out / f'geneval_before_seed_{seed}.json', geneval,
                        config, None, seed, extra)
        after = geneval(config, checkpoints[-1], seed, extra)
        (work_dir / 'batched').mkdir(exist_ok=True)
        (work_dir / 'batched' / 'before_after.json').write_text(json.dumps(
            dict(before=before, after=after, before_iter=0,
                 after_iter=int(checkpoints[-1].stem.split('_')[1])),
            indent=1))
    if checkpoints:
        shifted = extra + [SHIFTED]
        cached(out / f'geneval_shifted_before_seed_{seed}.json', geneval,
               config, None, seed, shifted)
        cached(work_dir / 'geneval_shifted.json', geneval, config,
               checkpoints[-1], seed, shifted)
        cached(work_dir / 'understanding.json', understanding, config,
               checkpoints[-1], extra)
        cached(work_dir / 'probe.json', probed, *probe_setting(toy, arm),
               checkpoints[-1], extra)


def load(config, checkpoint=None, cfg_options=()):
    """The model of ``config`` (``--cfg-options`` strings applied) with
    ``checkpoint``'s weights, and its config; one CPU thread."""
    import torch
    from mmengine.config import DictAction

    from reca_toolkit.engine.inference import load_model
    torch.set_num_threads(1)
    options = None
    if cfg_options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--cfg-options', nargs='+', action=DictAction)
        options = parser.parse_args(['--cfg-options',
                                     *cfg_options]).cfg_options
    return load_model(str(REPO / config), checkpoint and str(checkpoint),
                      cfg_options=options)


def geneval(config, checkpoint, seed, cfg_options=(), batch_size=20):
    """The config's GenEval-Shapes validation (its validation prompts,
    :data:`PROMPTS`, and their metric) of the model with ``checkpoint``, prompts
    sampled ``batch_size`` at a time: batch ``b`` shares one generator
    seeded ``1000 * seed + b``. Metric names as a run's validation gives
    them (``geneval_shapes/overall``, ...)."""
    from reca_toolkit.registry import DATASETS, METRICS
    model, cfg = load(config, checkpoint, cfg_options)
    prompts = DATASETS.build(dict(cfg.val_dataloader.dataset.datasets[0],
                                  seed=1000 * seed))
    metric = METRICS.build(cfg.val_evaluator[0])
    for batch, start in enumerate(range(0, len(prompts), batch_size)):
        rows = [prompts[i] for i in
                range(start, min(start + batch_size, len(prompts)))]
        images = model.generate([r['prompt'] for r in rows],
                                seed=1000 * seed + batch)
        metric.process({}, [dict(r, pred=image)
                            for r, image in zip(rows, images)])
    return metric.evaluate(len(prompts))


def understanding(config, checkpoint=None, cfg_options=(), batch_size=64):
    """``DescriptionAccuracyMetric`` of the model of ``config`` (and
    ``checkpoint``) describing :data:`UNDERSTANDING_SCENES`."""
    import torch
    from PIL import Image

    from projects.janus_toy.janus_toy import GenEvalShapesScenes
    from reca_toolkit.datasets.transforms import ImageViews
    from reca_toolkit.evaluation.metrics.description import \
        DescriptionAccuracyMetric
    model, cfg = load(config, checkpoint, cfg_options)
    scenes = GenEvalShapesScenes(**UNDERSTANDING_SCENES)
    # The understanding view image-to-text trained on (the i2t source's).
    size = cfg.train_dataloader.dataset.sources.i2t.pipeline[1].und_size
    view = ImageViews(und_size=size)
    metric = DescriptionAccuracyMetric()
    for start in range(0, len(scenes), batch_size):
        samples = [scenes.raw(i) for i in
                   range(start, min(start + batch_size, len(scenes)))]
        pixels = torch.stack([
            view(dict(img=Image.fromarray(s['img'])))['und_pixels']
            for s in samples]).float() / 127.5 - 1
        texts = model.umm.describe(
            pixels, [s['conversations'][0][0] for s in samples])
        metric.process({}, [dict(pred_text=t, conversations=s['conversations'])
                            for t, s in zip(texts, samples)])
    return metric.compute_metrics(metric.results)


def probe_setting(toy, arm):
    """The config and options a run of ``arm`` is probed with: its own
    where it reconstructs (its understanding view), the toy's RecA config
    for the controls (every arm of a toy is one architecture)."""
    config, options = arms(toy)[arm]
    if config == TOYS[toy]['control']:
        return TOYS[toy]['reca'], []
    return config, options


def probed(config, options, checkpoint=None, extra=()):
    """``probe.py``'s scores of the model of ``config`` (``options`` and
    ``extra`` applied, ``checkpoint`` loaded), keyed ``'<condition>
    (<pairs>)'``."""
    from projects.toy_study import probe
    model, cfg = load(config, checkpoint, list(options) + list(extra))
    scenes = probe.scene_batch(PROBE_SCENES, *probe.views_of(cfg))
    result = probe.probe(model.umm, *scenes, probe.generic_instruction(cfg))
    return {f'{condition} ({pairs})': value
            for (condition, pairs), value in result.items()}


def cached(path, score, *args):
    """``score(*args)``, kept in ``path``: a finished score is not redone."""
    if not path.is_file():
        path.write_text(json.dumps(score(*args), indent=1))
    return json.loads(path.read_text())


def mean_ci(values):
    """Mean and half-width of its 95% Student-t interval over seeds."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float('nan')
    half = T95[len(values) - 1] * statistics.stdev(values) / len(values) ** .5
    return mean, half


def tag_scores(metrics):
    """GenEval-Shapes metrics (``geneval_shapes/<tag>``) by tag."""
    return {t: metrics[f'geneval_shapes/{t}'] for t in TAGS}


def scores(out, arm, seeds, which='after'):
    rows = {}
    for seed in seeds:
        path = result_file(out, arm, seed)
        if path:
            rows[seed] = tag_scores(json.loads(path.read_text())[which])
    return rows


def shifted_scores(out, arm, seeds):
    """GenEval-Shapes per tag with prompts shifted by one, per seed: the
    pretrained model's for ``arm='baseline'``."""
    if arm == 'baseline':
        paths = {s: out / f'geneval_shifted_before_seed_{s}.json'
                 for s in seeds}
        rows = {s: json.loads(p.read_text()) for s, p in paths.items()
                if p.is_file()}
    else:
        rows = run_scores(out, arm, seeds, 'geneval_shifted.json')
    return {s: tag_scores(metrics) for s, metrics in rows.items()}


def run_scores(out, arm, seeds, name, keys=None):
    """``<out>/<arm>/seed_<s>/<name>`` per seed that has it, ``keys`` of
    it (all by default)."""
    rows = {}
    for seed in seeds:
        path = out / arm / f'seed_{seed}' / name
        if path.is_file():
            data = json.loads(path.read_text())
            rows[seed] = {k: data[k] for k in keys or data}
    return rows


def _tabulate(label, columns, keys, pairs):
    """Per key mean ± CI per column; then the paired differences."""
    head = f'| {label} | ' + ' | '.join(
        f'{a} (n={len(columns[a])})' for a in columns) + ' |'
    lines = [head, '|' + '---|' * (len(columns) + 1)]
    for key in keys:
        cells = []
        for rows in columns.values():
            m, h = mean_ci([r[key] for r in rows.values()]) if rows \
                else (float('nan'), ) * 2
            cells.append(f'{m:.3f} ± {h:.3f}')
        lines.append(f'| {key} | ' + ' | '.join(cells) + ' |')
    pairs = [(arm, ref) for arm, ref in pairs
             if ref != arm and ref in columns]
    if pairs:
        lines += ['', 'Paired differences (same seeds):', '',
                  f'| {label} | '
                  + ' | '.join(f'{a} − {r}' for a, r in pairs) + ' |',
                  '|' + '---|' * (len(pairs) + 1)]
        for key in keys:
            cells = []
            for arm, ref in pairs:
                rows, base = columns[arm], columns[ref]
                diffs = [rows[s][key] - base[s][key]
                         for s in rows if s in base]
                m, h = mean_ci(diffs) if diffs else (float('nan'),) * 2
                cells.append(f'{m:+.3f} ± {h:.3f}')
            lines.append(f'| {key} | ' + ' | '.join(cells) + ' |')
    return lines


def table(out, arms, seeds, against=None):
    """Markdown: GenEval-Shapes per tag, mean ± CI per arm, then each arm's
    paired difference from ``against`` (by default from
    :data:`COMPARED_WITH`, else the baseline); then the same for the
    shifted-prompt score (and GenEval-Shapes minus it), description
    accuracy and the probe where they were scored."""
    pairs = [(arm, against or COMPARED_WITH.get(arm, 'baseline'))
             for arm in arms]
    columns = {'baseline': scores(out, arms[0], seeds, 'before')}
    columns.update({arm: scores(out, arm, seeds) for arm in arms})
    lines = ['GenEval-Shapes:', ''] + _tabulate('tag', columns, TAGS, pairs)
    shifted = {arm: shifted_scores(out, arm, seeds)
               for arm in ['baseline'] + arms}
    if any(shifted.values()):
        # Per seed, what the run scores with its prompts over without.
        read = {arm: {s: {t: columns[arm][s][t] - row[t] for t in TAGS}
                      for s, row in rows.items() if s in columns[arm]}
                for arm, rows in shifted.items()}
        lines += ['', 'GenEval-Shapes, each image from the next prompt '
                  '(prompt_shift=1): the score without reading the prompt:',
                  ''] + _tabulate('tag', shifted, TAGS, pairs)
        lines += ['', 'What reading the prompt is worth (GenEval-Shapes '
                  'minus its shifted score):', ''] + _tabulate(
                      'tag', read, TAGS, pairs)
    for name, title, keys in (
            ('understanding', 'Description accuracy on held-out scenes',
             UNDERSTANDING_KEYS),
            ('probe', 'The probe (projects/toy_study/probe.py)', None)):
        after = {arm: run_scores(out, arm, seeds, f'{name}.json', keys)
                 for arm in arms}
        before = out / f'{name}_before.json'
        if before.is_file() and any(after.values()):
            data = json.loads(before.read_text())
            # One checkpoint, scored without sampling: the same every seed.
            columns = {'baseline': {s: data for s in seeds}}
            columns.update(after)
            lines += ['', f'{title}:', ''] + _tabulate(
                'metric', columns, keys or list(data), pairs)
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('action', choices=['run', 'table'])
    parser.add_argument('--toy', choices=sorted(TOYS), default='janus')
    parser.add_argument('--arms', nargs='+', default=['reca', 'control'])
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
    known = arms(args.toy)
    unknown = [a for a in args.arms if a not in known]
    if unknown:
        parser.error(f'--arms {unknown} are not arms of the {args.toy} toy; '
                     f'its arms: {sorted(known)}')
    out = args.out.resolve()
    if args.action == 'run':
        out.mkdir(parents=True, exist_ok=True)
        reca = TOYS[args.toy]['reca']
        cached(out / 'understanding_before.json', understanding, reca, None,
               args.cfg_options)
        cached(out / 'probe_before.json', probed, reca, [], None,
               args.cfg_options)
        runs = [(arm, seed) for seed in args.seeds for arm in args.arms]
        with ThreadPoolExecutor(args.jobs) as pool:
            for message in pool.map(
                    lambda r: run_one(out, args.toy, *r, args.cfg_options),
                    runs):
                print(message, flush=True)
    print(table(out, args.arms, args.seeds, args.against))


if __name__ == '__main__':
    main()
