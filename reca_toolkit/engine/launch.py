"""What ``tools/train.py`` and ``tools/test.py`` hand over to.

Configs are Python files and are executed when loaded: only run configs
you trust, as with any MMEngine project.
"""
import collections
import contextlib
import copy
import os
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log

from reca_toolkit.engine.checkpoint import find_latest_checkpoint, is_complete
from reca_toolkit.engine.config_check import check_config


def load_config(path, cfg_options=None, work_dir=None, check_resources=True):
    """Read (execute) a config, apply overrides and check it (with
    ``check_resources``, also the weights and data folders it names)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(path))[0])
    check_config(cfg, resources=check_resources)
    return cfg


def setup_distributed(cfg, launcher):
    """Prepare ``cfg`` for ``launcher`` before the Runner is built.

    MMEngine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP
    wrapper passes ``device_ids=[local_rank]``; both fail without a GPU. On
    a CPU-only machine this initialises gloo itself (the Runner then skips
    its own initialisation) and wraps the model with ``device_ids=None``.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group('gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg')
                   or dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if cfg.get('strategy') is not None:
        _cpu_strategy(cfg.strategy)
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = \
        'gloo'


def _cpu_strategy(strategy):
    """A FlexibleRunner strategy's wrapper on CPU: FSDP needs
    ``device_id='cpu'`` ("FSDP needs a non-CPU accelerator device"), DDP
    ``device_ids=None``."""
    from mmengine._strategy import FSDPStrategy

    from reca_toolkit.registry import STRATEGIES
    wrapper = dict(strategy.get('model_wrapper') or {})
    if issubclass(STRATEGIES.get(strategy['type']), FSDPStrategy):
        wrapper['device_id'] = 'cpu'
    else:
        wrapper['device_ids'] = None
    strategy['model_wrapper'] = wrapper


@contextlib.contextmanager
def distributed(cfg, launcher):
    """:func:`setup_distributed`, and the process group torn down when the
    run ends: a group left to interpreter exit, or closed by one rank while
    another still talks to it (rank 0 writing the last checkpoint), can
    abort a rank ("terminate called without an active exception") after
    training has finished; a run that ends normally meets at a barrier
    first."""
    setup_distributed(cfg, launcher)
    try:
        yield
        if dist.is_initialized():
            dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


_RUNS = collections.Counter()  # runners built in this process, by config


def build_runner(cfg):
    """The config's runner. MMEngine names a run's logger and visualizer
    ``<config>_<second>`` and hands a later run with the same name the
    earlier one's instances, whose files are the earlier run's: a second run
    of a config in the same process (back-to-back runs of a study, the test
    suite) is named ``<config>_<n>`` unless it has an ``experiment_name``."""
    from mmengine.runner import Runner

    from reca_toolkit.registry import RUNNERS
    if cfg.get('experiment_name') is None:
        stem = osp.splitext(osp.basename(cfg.filename or 'run'))[0]
        _RUNS[stem] += 1
        if _RUNS[stem] > 1:
            cfg.experiment_name = f'{stem}_{_RUNS[stem]}'
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


class NothingToResume(FileNotFoundError):
    """``--resume`` where there is no complete checkpoint."""


def resolve_resume(resume, work_dir, allow_no_checkpoint=False):
    """The checkpoint that ``resume`` ('auto' or a path) continues from, or
    None to start fresh (only with ``allow_no_checkpoint``: a job script
    that always passes ``--resume``, like a requeued Slurm job, also starts
    the run)."""
    if resume != 'auto':
        if '://' not in resume and not is_complete(resume):
            raise NothingToResume(
                f"--resume {resume}: no such checkpoint, or it is incomplete "
                "(cut short); give a complete .pth, or --resume alone for "
                f"the newest complete one in the work directory")
        return resume
    found = find_latest_checkpoint(work_dir)
    if found is None:
        message = (f'--resume: {work_dir} holds no complete checkpoint to '
                   'resume from')
        if not allow_no_checkpoint:
            raise NothingToResume(
                message + '; train without --resume to start the run, or '
                'add --allow-no-checkpoint to start it when there is none')
        print_log(message + '; starting from scratch '
                  '(--allow-no-checkpoint)', logger='current', level=30)
    return found


def train(config, work_dir=None, resume=None, load_from=None, amp=False,
          cfg_options=None, launcher='none', allow_no_checkpoint=False):
    """Train ``config``.

    Args:
        resume: 'auto' for the newest complete checkpoint in the work
            directory, or a checkpoint path; None starts fresh. Nothing to
            resume is an error (:class:`NothingToResume`), found before
            anything is written, unless ``allow_no_checkpoint``.
        load_from: initialise the model from a checkpoint (weights only).
        amp: bf16 autocast via ``AmpOptimWrapper`` (GPU only).

    Raises:
        TrainingPreempted: a stop signal ended training after a checkpoint
            (``tools/train.py`` exits with ``EXIT_PREEMPTED``).
    """
    cfg = load_config(config, cfg_options, work_dir)
    if resume and load_from:
        raise ValueError('use --resume or --load-from, not both')
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    if resume:
        cfg.load_from = resolve_resume(resume, cfg.work_dir,
                                       allow_no_checkpoint)
        cfg.resume = cfg.load_from is not None
    elif load_from:
        cfg.resume = False
        cfg.load_from = load_from
    with distributed(cfg, launcher):
        return build_runner(cfg).train()


def test(config=None, checkpoint=None, work_dir=None, cfg_options=None,
         launcher='none', card=None):
    """Evaluate ``checkpoint`` with the config's test loop and metrics, and
    write an evaluation card (``reca_toolkit.evaluation.card``) into the
    run's log directory.

    Args:
        checkpoint: weights to load; None evaluates the model as the config
            builds it (a pretrained folder, or a seeded random init).
        card: an evaluation card to re-run instead of ``config`` and
            ``checkpoint``: its config and checkpoint are used after their
            hashes are verified, outputs go under ``work_dir``.
    """
    from mmengine.dist import is_main_process

    from reca_toolkit.evaluation import card as cards
    recorded = None
    if card is not None:
        recorded = cards.load_card(card)
        cards.verify_card(recorded, card)
        work_dir = work_dir or osp.join(
            'work_dirs', 'rerun_' + osp.splitext(osp.basename(card))[0])
        config = osp.join(work_dir, 'card_config.py')
        os.makedirs(work_dir, exist_ok=True)
        cards.card_config(recorded, work_dir).dump(config)
        checkpoint = (recorded['checkpoint'] or {}).get('path')
    elif config is None:
        raise ValueError('test() needs a config or an evaluation card')
    cfg = load_config(config, cfg_options, work_dir)
    for key in ('test_dataloader', 'test_evaluator', 'test_cfg'):
        if key not in cfg:
            raise ValueError(f'{config} has no {key}; tools/test.py needs '
                             'test_dataloader, test_evaluator and test_cfg')
    cfg.load_from = checkpoint
    cfg.resume = False
    recorded_cfg = copy.deepcopy(cfg)
    with distributed(cfg, launcher):
        runner = build_runner(cfg)
        metrics = runner.test()
        if is_main_process():
            new = cards.build_card(recorded_cfg, checkpoint, runner, metrics)
            cards.write_card(new, osp.join(runner.log_dir, 'eval_card.json'))
            if recorded is not None:
                cards.compare_metrics(recorded['metrics'], new['metrics'])
    return metrics
