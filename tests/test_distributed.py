"""Distributed training on CPU with gloo: DDP equals one process."""
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


class LossRecorder(Hook):
    """Writes this rank's per-iteration losses and final weights."""

    def __init__(self, out, rank):
        self.out, self.rank, self.losses = out, rank, []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append({k: float(v) for k, v in outputs.items()
                            if k.startswith('loss')})

    def after_train(self, runner):
        (self.out / f'losses_{self.rank}.json').write_text(
            json.dumps(self.losses))
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
                               'custom_hooks': []}, str(out / 'work'))
    cfg.experiment_name = f'{out.name}_{rank}'
    setup_distributed(cfg, 'pytorch' if world_size > 1 else 'none')
    runner = build_runner(cfg)
    runner.register_hook(LossRecorder(out, rank))
    runner.train()


def run_workers(world_size, out, batch_size, iters):
    out.mkdir()
    mp.start_processes(_train, nprocs=world_size, start_method='spawn',
                       args=(world_size, free_port(), out, batch_size, iters))
    return [json.loads((out / f'losses_{r}.json').read_text())
            for r in range(world_size)]


def test_two_process_ddp_equals_one_process(tmp_path):
    iters = 4
    single, = run_workers(1, tmp_path / 'single', batch_size=8, iters=iters)
    ranks = run_workers(2, tmp_path / 'ddp', batch_size=4, iters=iters)
    for step in range(iters):
        for key in single[step]:
            ddp = sum(r[step][key] for r in ranks) / len(ranks)
            assert ddp == pytest.approx(single[step][key], abs=1e-5), (
                step, key)
    # Training moved the weights, identically in both set-ups.
    one = torch.load(tmp_path / 'single/weights_0.pt', weights_only=True)
    two = torch.load(tmp_path / 'ddp/weights_0.pt', weights_only=True)
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, atol=1e-5, rtol=1e-4)
    assert single[0]['loss'] != single[-1]['loss']


def test_dist_train_sh_runs_two_processes_with_torchrun(tmp_path):
    env = subprocess_env(PORT=str(free_port()), OMP_NUM_THREADS='1',
                         PYTHON=sys.executable)
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
         str(tmp_path), '--cfg-options', 'train_cfg.max_iters=4'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / 'iter_4.pth').is_file()
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'Distributed launcher: pytorch' in log
    assert 'Distributed training: True' in log
