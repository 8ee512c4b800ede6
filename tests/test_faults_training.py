"""Fault injection, training: NaN and inf (divergence).

Every test asserts what a user gets: the message, the exit status, and that
no completed work is lost. docs/reliability.md tabulates them.
"""
import json
import math
import re

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from fault_injection import CONFIG, SHORT, options
from reca_toolkit.engine import NonFiniteLossError, train
from reca_toolkit.engine.checkpoint import find_latest_checkpoint
from reca_toolkit.registry import HOOKS


def records(work_dir):
    """The scalars.json records of each run in ``work_dir``, oldest first."""
    return [[json.loads(line) for line in path.read_text().splitlines()]
            for path in sorted(work_dir.glob('*/vis_data/scalars.json'))]


def log_text(work_dir):
    return '\n'.join(p.read_text() for p in sorted(work_dir.glob('*/*.log')))


def trainable(runner):
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if p.requires_grad}


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
