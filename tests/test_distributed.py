"""Distributed training on CPU with gloo: DDP equals one process, in the
weights and in the losses every rank logs, also across a resume."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.hooks import Hook

from conftest import REPO, subprocess_env

CONFIG = str(REPO / 'tests/configs/tiny_reca.py')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class StepRecorder(Hook):
    """Writes this rank's data, losses and gradient norm per iteration, and
    its final weights."""

    def __init__(self, out, rank):
        self.out, self.rank, self.steps = out, rank, []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        step = {k: float(v) for k, v in outputs.items()
                if k.startswith('loss')}
        step['grad_norm'] = runner.message_hub.get_scalar(
            'train/grad_norm').current()
        # Which samples this rank trained on: stream positions, and the
        # pixels' sums, which tell the images apart.
        step['data'] = {
            source: dict(draw=batch['draw'].tolist(),
                         pixels=batch['und_pixels'].sum((1, 2, 3)).tolist())
            for source, batch in data_batch['inputs'].items()}
        self.steps.append(step)

    def after_train(self, runner):
        (self.out / f'steps_{self.rank}.json').write_text(
            json.dumps(self.steps))
        model = getattr(runner.model, 'module', runner.model)
        torch.save(model.state_dict(), self.out / f'weights_{self.rank}.pt')


def _train(rank, world_size, port, out, batch_size, iters):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), HF_HUB_OFFLINE='1')
    from reca_toolkit.engine.launch import (build_runner, load_config,
                                            setup_distributed)
    cfg = load_config(CONFIG, {'train_dataloader.batch_size': batch_size,
                               'train_cfg.max_iters': iters,
                               'default_hooks.checkpoint.interval': 2,
                               'custom_hooks': []}, str(out / 'work'))
    cfg.experiment_name = f'{out.name}_{rank}'
    setup_distributed(cfg, 'pytorch' if world_size > 1 else 'none')
    runner = build_runner(cfg)
    runner.register_hook(StepRecorder(out, rank))
    runner.train()


def run_workers(world_size, out, batch_size, iters):
    out.mkdir()
    mp.start_processes(_train, nprocs=world_size, start_method='spawn',
                       args=(world_size, free_port(), out, batch_size, iters))
    return [json.loads((out / f'steps_{r}.json').read_text())
            for r in range(world_size)]


ITERS = 4


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """One process with batch 8 and two with batch 4, 4 iterations each."""
    out = tmp_path_factory.mktemp('ddp')
    single, = run_workers(1, out / 'single', batch_size=8, iters=ITERS)
    ranks = run_workers(2, out / 'ddp', batch_size=4, iters=ITERS)
    return out, single, ranks


def relative_error(actual, expected):
    return abs(actual - expected) / abs(expected)


# Relative. The batch split in two and gloo's sum move losses by up to
# 1.4e-7 and weights by 8e-8 (absolute); the gradient norm is bit-equal. An
# instruction choice keyed by rank moves losses by 6e-6 to 7e-5, the
# gradient norm by 1e-3 and weights by 1e-3.
TOLERANCE = 1e-6


def logged(work_dir):
    """iteration -> the smoothed losses LoggerHook wrote."""
    path, = work_dir.glob('*/vis_data/scalars.json')
    return {r['iter']: {k: v for k, v in r.items() if k.startswith('loss')}
            for r in map(json.loads, path.read_text().splitlines())}


def assert_close(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        assert relative_error(actual[key], expected[key]) < TOLERANCE, key


def test_each_rank_trains_on_its_slice_of_the_single_process_batch(runs):
    _, single, ranks = runs
    for step in range(ITERS):
        whole = single[step]['data']
        assert set(whole) == {'recon', 'i2t'}
        for source, samples in whole.items():
            parts = [r[step]['data'][source] for r in ranks]
            for key in ('draw', 'pixels'):
                # Rank 0 takes the first half, rank 1 the second.
                assert parts[0][key] + parts[1][key] == samples[key], (
                    step, source, key)


def test_two_process_ddp_equals_one_process(runs):
    out, single, ranks = runs
    # Every rank sees, and rank 0 logs, the global losses (each rank's own
    # differed: loss_i2t 5.10 against 6.93 in one process), and the reduced
    # gradient norm.
    for step in range(ITERS):
        for rank in ranks:
            assert_close({k: v for k, v in rank[step].items()
                          if k != 'data'},
                         {k: v for k, v in single[step].items()
                          if k != 'data'})
    for step, losses in logged(out / 'single/work').items():
        assert_close(logged(out / 'ddp/work')[step], losses)
    # Training moved the weights, identically in both set-ups and ranks.
    one = torch.load(out / 'single/weights_0.pt', weights_only=True)
    for rank in range(2):
        two = torch.load(out / f'ddp/weights_{rank}.pt', weights_only=True)
        assert set(two) == set(one)
        for name, value in one.items():
            torch.testing.assert_close(two[name], value, atol=1e-6, rtol=0)
    assert single[0]['loss'] != single[-1]['loss']


def test_ddp_smoothing_window_resumes_on_one_process(runs, tmp_path):
    """The smoothing window a DDP checkpoint carries is of global losses:
    resumed on one process, the logged means equal the uninterrupted run's.
    """
    out, _, _ = runs
    from reca_toolkit.engine import train
    train(CONFIG, work_dir=str(tmp_path),
          resume=str(out / 'ddp/work/iter_2.pth'),
          cfg_options={'train_dataloader.batch_size': 8,
                       'train_cfg.max_iters': ITERS, 'custom_hooks': []})
    after_resume = logged(tmp_path)
    assert sorted(after_resume) == [3, 4]
    for step, losses in after_resume.items():
        assert_close(losses, logged(out / 'single/work')[step])


def test_dist_train_sh_runs_two_processes_with_torchrun(runs, tmp_path):
    env = subprocess_env(PORT=str(free_port()), OMP_NUM_THREADS='1',
                         PYTHON=sys.executable)
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
         str(tmp_path), '--cfg-options', f'train_cfg.max_iters={ITERS}'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'Distributed launcher: pytorch' in log
    assert 'Distributed training: True' in log
    # The spawned 2-process run of batch 4 per rank, launched by torchrun:
    # the same weights.
    trained = torch.load(tmp_path / f'iter_{ITERS}.pth', weights_only=True)
    assert trained['meta']['iter'] == ITERS
    out, _, _ = runs
    spawned = torch.load(out / 'ddp/weights_0.pt', weights_only=True)
    assert set(trained['state_dict']) == set(spawned)
    for name, value in spawned.items():
        torch.testing.assert_close(trained['state_dict'][name], value,
                                   atol=1e-6, rtol=0)
