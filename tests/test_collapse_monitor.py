"""The collapse monitor on a real MMEngine Runner.

A one-parameter model whose "reconstruction" loss falls as its weight moves
while a validation score -- a function of the same weight -- falls or rises
with it: the two numbers the hook follows, logged by a real training run.
"""
import json

import pytest
import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from reca_toolkit.engine.hooks.collapse_monitor_hook import shortcut_signal
from reca_toolkit.registry import HOOKS


class Drift(BaseModel):
    """``loss_recon = (w - 3)^2``: falls every step as SGD moves w to 3."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, inputs, data_samples=None, mode='loss'):
        if mode == 'loss':
            return dict(loss_recon=((self.w - 3) ** 2).sum())
        return [dict(w=float(self.w))]


class Quality(BaseMetric):
    """A text-to-image stand-in score that falls (or rises) with w."""

    def __init__(self, falls):
        super().__init__()
        self.falls = falls

    def process(self, data_batch, data_samples):
        self.results += data_samples

    def compute_metrics(self, results):
        w = results[-1]['w']
        return {'t2i/overall': 1 - w / 3 if self.falls else w / 3}


class Items(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.zeros(1))


def loader(sampler):
    return dict(dataset=Items(), sampler=dict(type=sampler), batch_size=1,
                collate_fn=dict(type='pseudo_collate'))


def train(tmp_path, falls, watch='generation'):
    runner = Runner(
        model=Drift(), work_dir=str(tmp_path), default_scope='reca_toolkit',
        # MMEngine keys its logger and visualizer by experiment name (a
        # timestamp by default): two runs in one second would share them.
        experiment_name=tmp_path.name,
        train_dataloader=loader('InfiniteSampler'),
        val_dataloader=loader('DefaultSampler'),
        val_evaluator=Evaluator(Quality(falls)),
        train_cfg=dict(by_epoch=False, max_iters=40, val_interval=10),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.02)),
        custom_hooks=[dict(type='CollapseMonitorHook',
                           quality_key='t2i/overall', watch=watch,
                           patience=2, min_drop=0.05)],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=10)),
        randomness=dict(seed=0))
    runner.train()
    log = next(tmp_path.glob('*/*.log')).read_text()
    scalars = [json.loads(line) for line in next(
        tmp_path.glob('*/vis_data/scalars.json')).read_text().splitlines()]
    quality = 'collapse/t2i_quality' if watch == 'generation' else \
        'collapse/und_quality'
    return log, [s for s in scalars if quality in s]


def test_warns_when_recon_improves_while_quality_falls(tmp_path):
    log, points = train(tmp_path, falls=True)
    assert [p['step'] for p in points] == [10, 20, 30, 40]
    recon = [p['collapse/recon_loss'] for p in points]
    quality = [p['collapse/t2i_quality'] for p in points]
    assert recon == sorted(recon, reverse=True)
    assert quality == sorted(quality, reverse=True)
    # Two falling intervals are needed: the third validation is the first.
    assert [p['collapse/shortcut'] for p in points] == [0, 0, 1, 1]
    assert 'possible autoencoder shortcut: loss_recon fell' in log


def test_quiet_when_quality_rises(tmp_path):
    log, points = train(tmp_path, falls=False)
    assert len(points) == 4
    assert not any(p['collapse/shortcut'] for p in points)
    assert 'possible autoencoder shortcut' not in log
    assert 'collapse monitor at iteration 40: loss_recon' in log


@pytest.mark.parametrize('points, expected', [
    # recon falls twice, quality falls 0.1: a shortcut
    ([(None, .6), (2.0, .6), (1.5, .55), (1.0, .5)], (2.0, 1.0, .6, .5)),
    # before any training there is no recon loss to compare
    ([(None, .6), (1.5, .55), (1.0, .5)], None),
    # recon rose once in the window
    ([(2.0, .6), (2.1, .55), (1.0, .5)], None),
    # quality fell less than min_drop
    ([(2.0, .6), (1.5, .59), (1.0, .59)], None),
])
def test_shortcut_signal(points, expected):
    assert shortcut_signal(points, patience=2, min_drop=0.05) == expected


def test_watching_understanding_names_its_scalars_and_advice(tmp_path):
    log, points = train(tmp_path, falls=True, watch='understanding')
    assert [p['collapse/und_shortcut'] for p in points] == [0, 0, 1, 1]
    assert not any('collapse/shortcut' in p for p in points)
    assert 'understanding is paying for reconstruction' in log
    with pytest.raises(ValueError, match=r"\['generation', "
                       r"'understanding'\]"):
        HOOKS.build(dict(type='CollapseMonitorHook', watch='t2i'))
