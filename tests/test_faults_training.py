"""Fault injection, training: SIGTERM and SIGUSR1 (preemption), NaN and inf
(divergence), and tools/slurm_train.sh's requeue.

Every test asserts what a user gets: the message, the exit status, and that
no completed work is lost. docs/reliability.md tabulates them.
"""
import json
import math
import os
import re
import signal
import subprocess
import time

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from fault_injection import CONFIG, REPO, SHORT, child, options
from reca_toolkit.engine import (EXIT_PREEMPTED, NonFiniteLossError,
                                 TrainingPreempted, train)
from reca_toolkit.engine.checkpoint import find_latest_checkpoint
from reca_toolkit.registry import HOOKS


def records(work_dir):
    """The scalars.json records of each run in ``work_dir``, oldest first."""
    return [[json.loads(line) for line in path.read_text().splitlines()]
            for path in sorted(work_dir.glob('*/vis_data/scalars.json'))]


def log_text(work_dir):
    return '\n'.join(p.read_text() for p in sorted(work_dir.glob('*/*.log')))


def saved_iter(path):
    return torch.load(path, weights_only=True, mmap=True)['meta']['iter']


def trainable(runner):
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if p.requires_grad}


@HOOKS.register_module(force=True)
class FaultTestSignalHook(Hook):
    """Sends this process ``signal_name`` during iteration ``at``."""

    def __init__(self, at, signal_name):
        self.at, self.signal_name = at, signal_name

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), getattr(signal, self.signal_name))


@HOOKS.register_module(force=True)
class FaultTestNaNHook(Hook):
    """Makes ``loss_<objective>`` NaN in ``iterations`` (1-based), and keeps
    the trainable weights after every iteration in ``WEIGHTS[key]``."""

    WEIGHTS = {}

    def __init__(self, iterations, key, objective='recon'):
        self.iterations, self.key = iterations, key
        self.objective = f'loss_{objective}'
        self.WEIGHTS[key] = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        model.__dict__.pop('parse_losses', None)
        if runner.iter + 1 in self.iterations:
            parse = model.parse_losses

            def nan_loss(losses):
                losses[self.objective] = losses[self.objective] * math.nan
                return parse(losses)

            model.parse_losses = nan_loss

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.WEIGHTS[self.key].append(trainable(runner))


# --------------------------------------------------------------------------
# Preemption
# --------------------------------------------------------------------------
def wait_for(log, pattern, process, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and process.is_alive():
        if log.exists() and re.search(pattern, log.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError(f'{pattern!r} never appeared in {log}:\n'
                         + (log.read_text() if log.exists() else ''))


def test_sigterm_saves_at_the_step_boundary_and_exits_for_requeue(tmp_path):
    """Slurm's preemption: SIGTERM to the job step's process group (the
    trainer and its DataLoader worker), in the middle of a run whose
    regular checkpoints are far apart. The job script's command, with
    --resume --allow-no-checkpoint, both starts and continues the run."""
    work_dir, log = tmp_path / 'work', tmp_path / 'train.log'
    command = [CONFIG, '--work-dir', work_dir, '--resume',
               '--allow-no-checkpoint', '--cfg-options', *SHORT,
               'default_hooks.checkpoint.interval=1000',
               'train_dataloader.num_workers=1']
    with child([*command, 'train_cfg.max_iters=1000'], log) as process:
        wait_for(log, r'Iter\(train\) \[\s*1/1000\]', process)
        os.killpg(process.pid, signal.SIGTERM)
        process.join(timeout=300)
        assert process.exitcode == EXIT_PREEMPTED

    text = log.read_text()
    assert (f'--resume: {work_dir} holds no complete checkpoint to resume '
            'from; starting from scratch (--allow-no-checkpoint)') in text
    stopped = re.search(r'SIGTERM received: stopped after iteration (\d+) '
                        r'and saved (\S+); exiting with status 75', text)
    assert stopped, text[-3000:]
    last = int(stopped.group(1))
    path = str(work_dir / f'iter_{last}.pth')
    assert stopped.group(2) == path
    # No completed iteration is lost: the checkpoint holds the last one.
    logged = [r['iter'] for r in records(work_dir)[0]]
    assert logged == list(range(1, last + 1))
    assert saved_iter(path) == last
    assert (work_dir / 'last_checkpoint').read_text() == path

    # The requeued job runs the same command and continues.
    train(CONFIG, work_dir=str(work_dir), resume='auto',
          allow_no_checkpoint=True,
          cfg_options=options(*SHORT, f'train_cfg.max_iters={last + 1}'))
    assert [r['iter'] for r in records(work_dir)[-1]] == [last + 1]


def test_sigusr1_saves_and_stops_in_process(tmp_path):
    """``#SBATCH --signal=USR1@...``: the same stop, here in this process;
    the signal handlers are restored afterwards."""
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(TrainingPreempted) as info:
        train(CONFIG, work_dir=str(tmp_path), cfg_options=dict(
            options(*SHORT, 'train_cfg.max_iters=5',
                    'default_hooks.checkpoint.interval=1000'),
            custom_hooks=[dict(type='FaultTestSignalHook', at=2,
                               signal_name='SIGUSR1')]))
    assert (info.value.signal_name, info.value.iteration) == ('SIGUSR1', 2)
    assert info.value.checkpoint == str(tmp_path / 'iter_2.pth')
    assert saved_iter(tmp_path / 'iter_2.pth') == 2
    assert signal.getsignal(signal.SIGUSR1) is before


@pytest.fixture
def fake_slurm(tmp_path):
    """``srun`` exiting with $SRUN_STATUS and ``scontrol`` recording its
    arguments, first on PATH."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text('#!/bin/sh\nexit "$SRUN_STATUS"\n')
    (bin_dir / 'scontrol').write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.txt\n')
    for tool in ('srun', 'scontrol'):
        (bin_dir / tool).chmod(0o755)

    def run(status, job_id=None):
        env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}',
                   SRUN_STATUS=str(status))
        env.pop('SLURM_JOB_ID', None)
        if job_id is not None:
            env['SLURM_JOB_ID'] = job_id
        proc = subprocess.run(
            ['bash', 'tools/slurm_train.sh', 'part', 'job', CONFIG, 'wd'],
            cwd=REPO, env=env, capture_output=True, text=True)
        calls = tmp_path / 'scontrol.txt'
        return proc, calls.read_text() if calls.exists() else ''

    return run


def test_slurm_train_requeues_on_the_preempted_status(fake_slurm):
    proc, scontrol = fake_slurm(EXIT_PREEMPTED, job_id='4242')
    assert proc.returncode == EXIT_PREEMPTED
    assert scontrol == 'requeue 4242\n'


@pytest.mark.parametrize('status', [0, 1])
def test_slurm_train_passes_other_statuses_through(fake_slurm, status):
    proc, scontrol = fake_slurm(status, job_id='4242')
    assert proc.returncode == status and scontrol == ''


def test_slurm_train_outside_a_batch_job_says_how_to_continue(fake_slurm):
    proc, scontrol = fake_slurm(EXIT_PREEMPTED)
    assert proc.returncode == EXIT_PREEMPTED and scontrol == ''
    assert 'run the same command with --resume' in proc.stderr


def test_back_to_back_runs_in_one_second_log_into_their_own_files(
        tmp_path, monkeypatch):
    """MMEngine names a run's logger by config and second and reuses an
    existing one: without a name of its own, the second run of a config in
    one process and second would log into the first run's file."""
    monkeypatch.setattr(time, 'strftime', lambda *_: '20261201_000000')
    for name in ('first', 'second'):
        train(CONFIG, work_dir=str(tmp_path / name), cfg_options=options(
            *SHORT, 'train_cfg.max_iters=1',
            'default_hooks.checkpoint.interval=0'))
    for name in ('first', 'second'):
        assert log_text(tmp_path / name).count('Iter(train) [1/1]') == 1


# --------------------------------------------------------------------------
# NaN and inf
# --------------------------------------------------------------------------
def test_one_nan_loss_skips_its_update_and_training_goes_on(tmp_path):
    train(CONFIG, work_dir=str(tmp_path), cfg_options=dict(
        options(*SHORT, 'train_cfg.max_iters=3'),
        custom_hooks=[dict(type='FaultTestNaNHook', iterations=[2],
                           key='once')]))
    after = FaultTestNaNHook.WEIGHTS['once']
    for name, weight in after[0].items():
        assert torch.equal(after[1][name], weight), name   # not applied
    assert any(not torch.equal(after[2][n], w) for n, w in after[1].items())
    assert re.search(r'iteration 2: update skipped for a non-finite loss of '
                     r'objective recon \(loss=nan, loss_recon=nan, '
                     r'loss_i2t=[0-9.]+, grad_norm=nan\); 1 in a row, '
                     r'training stops at 3', log_text(tmp_path))
    logged = records(tmp_path)[0]
    assert all(math.isfinite(r['loss']) for r in logged)
    assert [r.get('skipped_updates') for r in logged] == [None, 1, 1]
    state = torch.load(tmp_path / 'iter_3.pth', weights_only=True)
    assert all(torch.isfinite(v).all() for v in
               state['state_dict'].values() if v.is_floating_point())


def test_diverging_learning_rate_stops_naming_iteration_and_losses(
        tmp_path):
    """The issue's run: lr so high that the loss is NaN from iteration 2.
    With max_nonfinite_steps=2 training stops at iteration 3; the
    checkpoints written are finite."""
    with pytest.raises(NonFiniteLossError) as info:
        train(CONFIG, work_dir=str(tmp_path), cfg_options=options(
            *SHORT, 'train_cfg.max_iters=10',
            'train_cfg.max_nonfinite_steps=2', 'optim_wrapper.clip_grad=None',
            'optim_wrapper.optimizer.lr=1e6'))
    message = str(info.value)
    assert message.startswith(
        'training stopped at iteration 3: 2 consecutive updates (iterations '
        '2-3) were skipped, the last for a non-finite')
    assert re.search(r'loss_recon=\S+, loss_i2t=\S+, grad_norm=nan', message)
    assert 'train_cfg.max_nonfinite_steps' in message
    latest = find_latest_checkpoint(tmp_path)
    state = torch.load(latest, weights_only=True)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values()
               if v.is_floating_point())
