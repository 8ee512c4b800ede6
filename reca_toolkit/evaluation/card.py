"""Evaluation cards: every setting that produced a number, next to it.

A card is a JSON file written after every ``tools/test.py`` run. It holds
the fully resolved config (model, sampler settings, data, metrics, seeds),
the checkpoint's SHA-256, what each prompt dataset and metric reports about
itself (prompt-file hash, images per prompt, seed policy, resolution,
scorer identity and version), the package versions and the metrics.
``python tools/test.py --card CARD.json`` re-runs exactly that evaluation:
it refuses a checkpoint or prompt file whose hash changed.
"""
import datetime
import json
import os.path as osp
import platform
import sys
from pathlib import Path

from mmengine.config import Config
from mmengine.dist import get_world_size
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from reca_toolkit.evaluation.scorers.base import file_sha256, package_version
from reca_toolkit.version import __version__

CARD_VERSION = 1


def checkpoint_info(path):
    if path is None:
        return None
    return dict(path=str(path), sha256=file_sha256(path))


def weights_info(folder):
    """Hashes of a pretrained folder's weight files."""
    if folder is None or not osp.isdir(folder):
        return None
    files = sorted(p for p in Path(folder).iterdir()
                   if p.suffix in ('.safetensors', '.bin', '.pth'))
    return dict(path=str(folder),
                sha256={p.name: file_sha256(p) for p in files})


def sampling_settings(model):
    """What the UMM generates with (``BaseUMM.sampling_settings``: guidance
    scale, temperature, steps, ...), read from the built model so that
    nothing a config left at a default goes unrecorded."""
    model = model.module if is_model_wrapper(model) else model
    umm = getattr(model, 'umm', None)
    return umm.sampling_settings() if umm is not None else {}


def _card_infos(objects):
    return [o.card_info() for o in objects if hasattr(o, 'card_info')]


def dataset_infos(dataset):
    """The card entries of an evaluation dataset: one per evaluation set,
    the sets of an ``EvalSets`` each with its own."""
    return _card_infos(getattr(dataset, 'datasets', [dataset]))


def build_card(cfg, checkpoint, runner, metrics):
    """The card of a finished test run."""
    loop = runner.test_loop
    metric_infos = _card_infos(loop.evaluator.metrics)
    sampling = sampling_settings(runner.model)
    resolutions = {tuple(i['resolution']) for i in metric_infos
                   if i.get('resolution')}
    if resolutions:
        sampling['resolution'] = [list(r) for r in sorted(resolutions)]
    umm_cfg = cfg.model.get('umm', {})
    return dict(
        card_version=CARD_VERSION,
        created=datetime.datetime.now().isoformat(timespec='seconds'),
        toolkit=dict(name='reca_toolkit', version=__version__),
        environment=dict(
            python=platform.python_version(),
            **{name: package_version(name) for name in
               ('torch', 'transformers', 'mmengine', 'numpy',
                'opencv-python')}),
        command=sys.argv,
        world_size=get_world_size(),
        model=dict(type=cfg.model.get('type'), umm=umm_cfg.get('type'),
                   pretrained=weights_info(umm_cfg.get('pretrained'))),
        checkpoint=checkpoint_info(checkpoint),
        sampling=sampling,
        datasets=dataset_infos(loop.dataloader.dataset),
        evaluator=metric_infos,
        metrics={k: float(v) if isinstance(v, (int, float)) else v
                 for k, v in metrics.items()},
        config=cfg.to_dict(),
    )


def write_card(card, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        text = json.dumps(card, indent=2)
    except TypeError as e:
        raise TypeError(f'evaluation card for {path} holds a value JSON '
                        f'cannot store: {e}') from None
    Path(path).write_text(text + '\n')
    print_log(f'evaluation card written to {path}', logger='current')
    return path


def load_card(path):
    if not osp.isfile(path):
        raise FileNotFoundError(f'evaluation card {path} does not exist')
    with open(path) as f:
        try:
            card = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path} is not JSON: {e}') from None
    missing = [k for k in ('card_version', 'config', 'checkpoint',
                           'datasets', 'toolkit') if k not in card]
    if missing:
        raise ValueError(f'{path} is not an evaluation card: missing keys '
                         f'{missing}')
    if card['card_version'] != CARD_VERSION:
        raise ValueError(f"{path} has card_version {card['card_version']}; "
                         f'this toolkit reads version {CARD_VERSION}')
    return card


def card_config(card, work_dir):
    """The card's config, redirected to write into ``work_dir``: the new
    run's work directory and every metric ``out_dir`` move under it, so a
    re-run never overwrites the run it repeats."""
    cfg = Config(card['config'])
    cfg.work_dir = str(work_dir)
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
        else [cfg.test_evaluator]
    for metric in evaluators:
        if metric.get('out_dir'):
            metric['out_dir'] = osp.join(work_dir,
                                         osp.basename(metric['out_dir']))
    return cfg


def verify_card(card, path='card'):
    """Raise if the checkpoint or the prompts differ from the card's."""
    from reca_toolkit.registry import DATASETS
    ckpt = card['checkpoint']
    if ckpt is not None:
        if not osp.isfile(ckpt['path']):
            raise FileNotFoundError(f"{path}: checkpoint {ckpt['path']} "
                                    'does not exist')
        digest = file_sha256(ckpt['path'])
        if digest != ckpt['sha256']:
            raise ValueError(f"{path}: checkpoint {ckpt['path']} has SHA-256 "
                             f"{digest}, the card recorded {ckpt['sha256']}")
    recorded = {d['source']: d for d in card['datasets']}
    dataset = DATASETS.build(card['config']['test_dataloader']['dataset'])
    for info in dataset_infos(dataset):
        for key, what in (('prompt_sha256', 'prompts'),
                          ('data_sha256', 'images')):
            old = recorded.get(info['source'], {}).get(key)
            if old is not None and info[key] != old:
                raise ValueError(
                    f"{path}: the {what} of source '{info['source']}' have "
                    f'SHA-256 {info[key]}, the card recorded {old} '
                    f"({info.get('prompt_file', 'generated in code')})")
    if card['toolkit']['version'] != __version__:
        print_log(f"{path} was written by reca_toolkit "
                  f"{card['toolkit']['version']}, this is {__version__}; "
                  'results can differ where the code changed',
                  logger='current', level=30)


def compare_metrics(old, new):
    """Log each metric of a re-run next to the card's; True if all equal."""
    same = True
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        same &= a == b
        flag = '' if a == b else '  <-- differs'
        print_log(f'{key}: card {a}, re-run {b}{flag}', logger='current')
    return same
