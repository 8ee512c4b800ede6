"""Regression tests for the MMEngine 0.10.7 fixes in ``reca_toolkit.engine``.

One test (group) per fix in ``engine/compat.py`` plus the resumable train
loop and the config check. The traps they guard against are described in
``docs/engine_notes.md``.
"""
import importlib
import io
import os
import sys
import types

import mmengine
import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.loops import BaseLoop
from torch import nn
from torch.utils.data import Dataset

import reca_toolkit  # noqa: F401  (applies the compat patches)
from reca_toolkit.datasets import Source
from reca_toolkit.engine import compat
from reca_toolkit.engine.config_check import ConfigError, check_config
from reca_toolkit.registry import DATASETS, LOOPS, MODELS

# --------------------------------------------------------------------------
# Toy model, dataset and source for Runners
# --------------------------------------------------------------------------


class ToyModel(BaseModel):
    """One weight; counts training steps and records the ``draw``s of every
    multi-source batch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.seen_draws = []
        self.loss_calls = 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.loss_calls += mode == 'loss'
        if isinstance(inputs, dict):            # collate_by_source batch
            self.seen_draws.append(inputs['toy']['draw'].tolist())
            x = inputs['toy']['x']
        else:                                   # pseudo_collate batch
            x = torch.stack(inputs)
        out = self.linear(x)
        if mode == 'loss':
            return dict(loss=(out - 1).pow(2).mean())
        return out


class ToyDataset(Dataset):
    metainfo = dict(name='toy')

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return dict(inputs=torch.tensor([float(index)]))


@DATASETS.register_module(name='CompatTestCountingSource', force=True)
class CountingSource(Source):
    """A source that records every sample it prepares (index, draw)."""

    calls = []

    def __init__(self, size=10, pipeline=()):
        super().__init__(pipeline)
        self.size = size

    def __len__(self):
        return self.size

    def raw(self, index):
        return dict(x=torch.tensor([float(index)]))

    def prepare(self, index, draw):
        CountingSource.calls.append((index, draw))
        return super().prepare(index, draw)


def make_runner(tmp_path, name, train_dataloader, max_iters, **kwargs):
    """A tiny iteration-based Runner; ``name`` keeps experiments apart."""
    torch.manual_seed(0)
    kwargs.setdefault('train_cfg', dict(type='ResumableIterBasedTrainLoop',
                                        max_iters=max_iters))
    # Never rely on Runner's mutable default ``randomness`` dict: a resume
    # writes the resumed seed into it, for every later Runner in the process.
    kwargs.setdefault('randomness', dict(seed=None))
    return Runner(
        model=ToyModel(),
        work_dir=str(tmp_path / name),
        train_dataloader=train_dataloader,
        optim_wrapper=dict(type='OptimWrapper',
                           optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3,
                                           by_epoch=False)),
        log_processor=dict(by_epoch=False),
        default_scope='reca_toolkit',
        experiment_name=f'{tmp_path.name}-{name}',
        **kwargs)


def toy_dataloader():
    return dict(batch_size=2, num_workers=0, dataset=ToyDataset(),
                sampler=dict(type='InfiniteSampler', shuffle=False))


def multi_source_dataloader(seed=0):
    return dict(
        batch_size=4, num_workers=0,
        dataset=dict(type='MultiSourceDataset', sources=dict(
            toy=dict(type='CompatTestCountingSource', size=10))),
        sampler=dict(type='MultiSourceSampler', seed=seed),
        batch_sampler=dict(type='MultiSourceBatchSampler'),
        collate_fn=dict(type='reca_toolkit.collate_by_source'))


def no_temp_files(folder):
    return [f for f in os.listdir(folder) if '.tmp' in f] == []


# --------------------------------------------------------------------------
# 1. Runner checkpoints load with weights_only=True and resume
# --------------------------------------------------------------------------
@pytest.fixture
def trained(tmp_path):
    """4 iterations, checkpoints at 3 and 4 (the last)."""
    runner = make_runner(tmp_path, 'train', toy_dataloader(), max_iters=4)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0].tolist()
    return runner, losses


def test_runner_checkpoint_is_plain_data(trained):
    runner, losses = trained
    work_dir = runner.work_dir
    assert {'iter_3.pth', 'iter_4.pth'} <= set(os.listdir(work_dir))
    assert no_temp_files(work_dir)
    # Without the fix, MessageHub state pickles HistoryBuffer and numpy
    # objects and this load fails with an UnpicklingError.
    checkpoint = torch.load(os.path.join(work_dir, 'iter_4.pth'),
                            weights_only=True)
    assert checkpoint['meta']['iter'] == 4
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, dict)
    assert loss['log'] == pytest.approx(losses)
    assert all(type(v) is float for v in loss['log'])
    assert set(checkpoint['state_dict']) == {'linear.weight', 'linear.bias'}


def test_checkpoint_names_no_pickled_classes(trained):
    # A guard for the weights_only fix: the saved file contains no
    # reference to HistoryBuffer or numpy globals at all.
    runner, _ = trained
    with open(os.path.join(runner.work_dir, 'iter_4.pth'), 'rb') as f:
        data = f.read()
    assert b'HistoryBuffer' not in data
    assert b'numpy' not in data


def test_runner_resume_restores_iteration_and_history(trained, tmp_path):
    _, losses = trained
    checkpoint = str(tmp_path / 'train' / 'iter_3.pth')
    resumed = make_runner(tmp_path, 'resume', toy_dataloader(), max_iters=4,
                          resume=True, load_from=checkpoint)
    resumed.train()
    # It started at iteration 3: one more iteration, one more batch.
    assert resumed.iter == 4
    assert resumed.model.loss_calls == 1
    buffer = resumed.message_hub.get_scalar('train/loss')
    assert isinstance(buffer, HistoryBuffer)
    log, count = buffer.data
    assert len(log) == 4 and count.tolist() == [1, 1, 1, 1]
    # The first three entries came from the checkpoint, as saved.
    assert log[:3].tolist() == pytest.approx(losses[:3])
    # The resumed weights are those of iteration 3 of the first run, so the
    # 4th loss is the first run's 4th loss.
    assert log[3] == pytest.approx(losses[3], rel=1e-5)


def test_message_hub_state_roundtrip(tmp_path):
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance(f'{tmp_path.name}-hub')
    hub.update_scalar('train/x', 1.5)
    hub.update_scalar('train/x', np.float32(2.5), count=2)
    hub.update_info('np_value', np.int64(7))
    state = hub.state_dict()
    # Plain data only: survives a weights_only round trip.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state['runtime_info']['np_value'] == 7
    other = MessageHub.get_instance(f'{tmp_path.name}-hub-2')
    other.load_state_dict(state)
    restored = other.get_scalar('train/x')
    assert isinstance(restored, HistoryBuffer)
    assert restored.data[0].tolist() == [1.5, 2.5]
    assert restored.data[1].tolist() == [1, 2]


# --------------------------------------------------------------------------
# 2. The local checkpoint loader: weights_only, safetensors
# --------------------------------------------------------------------------
EXECUTED = []


def _side_effect(tag):
    EXECUTED.append(tag)
    return tag


class Payload:
    """Unpickling this runs code: what weights_only must refuse."""

    def __reduce__(self):
        return (_side_effect, ('unpickled',))


def test_loader_refuses_arbitrary_pickles(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    path = tmp_path / 'evil.pth'
    torch.save({'x': Payload(), 'w': torch.ones(1)}, path)
    EXECUTED.clear()
    with pytest.raises(RuntimeError, match='weights_only') as info:
        _load_checkpoint(str(path))
    assert str(path) in str(info.value)
    assert EXECUTED == []                   # no code ran
    # The Runner's load path goes through the same loader.
    with pytest.raises(RuntimeError, match='weights_only'):
        mmengine.runner.load_checkpoint(ToyModel(), str(path))
    assert EXECUTED == []


def test_loader_loads_plain_checkpoints_and_safetensors(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    from safetensors.torch import save_file
    weights = {'linear.weight': torch.full((1, 1), 3.0),
               'linear.bias': torch.full((1, ), -1.0)}
    torch.save(dict(state_dict=weights), tmp_path / 'plain.pth')
    loaded = _load_checkpoint(str(tmp_path / 'plain.pth'))
    assert torch.equal(loaded['state_dict']['linear.weight'],
                       weights['linear.weight'])

    save_file(weights, str(tmp_path / 'model.safetensors'))
    loaded = _load_checkpoint(str(tmp_path / 'model.safetensors'))
    assert set(loaded) == set(weights)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    model = ToyModel()
    mmengine.runner.load_checkpoint(model,
                                    str(tmp_path / 'model.safetensors'))
    assert model.linear.weight.item() == 3.0


def test_loader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        compat.load_local_checkpoint(str(tmp_path / 'absent.pth'))


# --------------------------------------------------------------------------
# 3. Atomic checkpoint writes
# --------------------------------------------------------------------------
def fail_midway(monkeypatch):
    """Make the file write die after half of the bytes hit the disk.

    MMEngine's ``save_checkpoint`` serialises with ``torch.save`` into a
    BytesIO and only then writes the file with ``LocalBackend.put``; a
    failure inside ``torch.save`` never touches the disk, so the write is
    the place where a crash leaves a half-written file.
    """
    from mmengine.fileio.backends import LocalBackend

    def put(self, obj, filepath):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
        raise OSError('No space left on device (simulated)')

    monkeypatch.setattr(LocalBackend, 'put', put)


def test_runner_save_is_atomic(tmp_path, monkeypatch):
    import mmengine.runner.runner as mm_runner
    target = tmp_path / 'iter_5.pth'
    fail_midway(monkeypatch)
    with pytest.raises(OSError, match='simulated'):
        mm_runner.save_checkpoint(dict(w=torch.ones(100)), str(target))
    assert not target.exists()
    assert os.listdir(tmp_path) == []       # no temp file left behind


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    import mmengine.runner.runner as mm_runner
    target = tmp_path / 'latest.pth'
    mm_runner.save_checkpoint(dict(w=torch.ones(3)), str(target))
    fail_midway(monkeypatch)
    with pytest.raises(OSError):
        mm_runner.save_checkpoint(dict(w=torch.zeros(100)), str(target))
    assert torch.equal(torch.load(target, weights_only=True)['w'],
                       torch.ones(3))
    assert os.listdir(tmp_path) == ['latest.pth']


def test_runner_save_succeeds(tmp_path):
    import mmengine.runner.runner as mm_runner
    target = tmp_path / 'sub' / 'ok.pth'
    mm_runner.save_checkpoint(dict(w=torch.arange(4)), str(target))
    assert torch.equal(torch.load(target, weights_only=True)['w'],
                       torch.arange(4))
    assert os.listdir(target.parent) == ['ok.pth']


@pytest.mark.parametrize('module,used_by', [
    ('mmengine.runner.checkpoint',
     'FlexibleRunner strategies (single_device.py, fsdp.py)'),
    ('mmengine.runner', 'CheckpointHook._publish_model'),
])
def test_other_save_paths_are_atomic(tmp_path, monkeypatch, module, used_by):
    """compat.py promises that an interrupted save never leaves a
    half-written file; MMEngine also calls ``save_checkpoint`` through
    these names (``runner_type='FlexibleRunner'`` is reachable from
    ``launch.build_runner``)."""
    save_checkpoint = importlib.import_module(module).save_checkpoint
    target = tmp_path / 'iter_7.pth'
    fail_midway(monkeypatch)
    with pytest.raises(OSError):
        save_checkpoint(dict(w=torch.ones(100)), str(target))
    assert not target.exists(), f'half-written file via {used_by}'


# --------------------------------------------------------------------------
# 4. pkg_resources-free package helpers
# --------------------------------------------------------------------------
def test_pkg_resources_is_absent_here():
    # The trap only exists with setuptools >= 81; if this fails the venv
    # changed and the next test no longer proves anything.
    with pytest.raises(ImportError):
        import pkg_resources  # noqa: F401


def test_package_helpers_work_without_pkg_resources():
    import mmengine.config.config as mm_config
    import mmengine.utils as mm_utils
    import mmengine.utils.package_utils as mm_package_utils
    for module in (mm_utils, mm_package_utils, mm_config):
        assert module.is_installed is compat.is_installed
        assert module.get_installed_path is compat.get_installed_path
    assert mm_utils.is_installed('torch')
    assert mm_config.is_installed('mmengine')
    assert not mm_utils.is_installed('surely_not_a_package_xyz')
    assert mm_config.get_installed_path('mmengine') == os.path.dirname(
        mmengine.__file__)
    with pytest.raises(ModuleNotFoundError):
        mm_utils.get_installed_path('surely_not_a_package_xyz')


# --------------------------------------------------------------------------
# 5. DeepSpeed optimiser registration without deepspeed.runtime.fp16.onebit
# --------------------------------------------------------------------------
@pytest.fixture
def clean_optimizers():
    from mmengine.registry import OPTIMIZERS
    before = dict(OPTIMIZERS.module_dict)
    yield OPTIMIZERS
    OPTIMIZERS._module_dict.clear()
    OPTIMIZERS._module_dict.update(before)


def fake_module(monkeypatch, name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def fake_optimizer(name):
    return type(name, (torch.optim.Optimizer, ), {})


def fake_deepspeed(monkeypatch, onebit=False):
    """A DeepSpeed >= 0.17 (no onebit) or an older one (``onebit=True``)."""
    fake_module(monkeypatch, 'deepspeed')
    fake_module(monkeypatch, 'deepspeed.ops')
    adam = fake_module(monkeypatch, 'deepspeed.ops.adam',
                       FusedAdam=fake_optimizer('FusedAdam'),
                       DeepSpeedCPUAdam=fake_optimizer('DeepSpeedCPUAdam'))
    fake_module(monkeypatch, 'deepspeed.ops.lamb',
                FusedLamb=fake_optimizer('FusedLamb'))
    if onebit:
        for name in ('deepspeed.runtime', 'deepspeed.runtime.fp16'):
            fake_module(monkeypatch, name)
        fake_module(monkeypatch, 'deepspeed.runtime.fp16.onebit',
                    OnebitAdam=fake_optimizer('OnebitAdam'),
                    OnebitLamb=fake_optimizer('OnebitLamb'),
                    ZeroOneAdam=fake_optimizer('ZeroOneAdam'))
    else:
        for name in ('deepspeed.runtime', 'deepspeed.runtime.fp16',
                     'deepspeed.runtime.fp16.onebit'):
            monkeypatch.delitem(sys.modules, name, raising=False)
    return adam


def test_deepspeed_without_onebit(monkeypatch, clean_optimizers):
    adam = fake_deepspeed(monkeypatch)
    registered = compat.register_deepspeed_optimizers()
    assert sorted(registered) == ['DeepSpeedCPUAdam', 'FusedAdam',
                                  'FusedLamb']
    assert clean_optimizers.get('FusedAdam') is adam.FusedAdam
    for name in ('OnebitAdam', 'OnebitLamb', 'ZeroOneAdam'):
        assert name not in clean_optimizers.module_dict


def test_deepspeed_with_onebit(monkeypatch, clean_optimizers):
    fake_deepspeed(monkeypatch, onebit=True)
    registered = compat.register_deepspeed_optimizers()
    assert 'OnebitAdam' in registered and 'ZeroOneAdam' in registered
    assert clean_optimizers.get('OnebitLamb').__name__ == 'OnebitLamb'


def test_deepspeed_strategy_uses_the_guarded_function():
    import mmengine._strategy.deepspeed as mm_deepspeed
    assert mm_deepspeed.register_deepspeed_optimizers is \
        compat.register_deepspeed_optimizers


# --------------------------------------------------------------------------
# 6. ResumableIterBasedTrainLoop: resume without replaying the data
# --------------------------------------------------------------------------
def train_and_record(runner):
    CountingSource.calls.clear()
    runner.train()
    return list(CountingSource.calls), list(runner.model.seen_draws)


@pytest.fixture
def uninterrupted(tmp_path):
    runner = make_runner(tmp_path, 'full', multi_source_dataloader(),
                         max_iters=6)
    calls, draws = train_and_record(runner)
    assert len(calls) == 6 * 4
    assert draws == [list(range(4 * i, 4 * i + 4)) for i in range(6)]
    return runner, calls, draws


def test_resumable_loop_loads_only_remaining_batches(uninterrupted,
                                                     tmp_path):
    _, full_calls, full_draws = uninterrupted
    resumed = make_runner(tmp_path, 'resumed', multi_source_dataloader(),
                          max_iters=6, resume=True,
                          load_from=str(tmp_path / 'full' / 'iter_3.pth'))
    calls, draws = train_and_record(resumed)
    assert resumed.iter == 6
    # Only iterations 4..6 were loaded (MMEngine's loop loads 3 more)...
    assert len(calls) == 3 * 4
    # ...and they are the samples the uninterrupted run saw there.
    assert calls == full_calls[12:]
    assert draws == full_draws[3:]


def test_stock_loop_replays_batches(uninterrupted, tmp_path):
    # The counter can tell: MMEngine's IterBasedTrainLoop loads (and
    # discards) the 3 batches before the resume point.
    resumed = make_runner(
        tmp_path, 'stock', multi_source_dataloader(), max_iters=6,
        resume=True, load_from=str(tmp_path / 'full' / 'iter_3.pth'),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=6))
    calls, _ = train_and_record(resumed)
    assert len(calls) == 6 * 4


def test_resumable_loop_same_stream_without_fixed_seed(tmp_path):
    """With no seed in the config the Runner draws one (from numpy) and
    seeds the sampler with it; the checkpoint records it, but the Runner
    builds the sampler before ``resume`` restores it. The resumed stream
    must still be the original one."""
    def runner(name, numpy_seed, **kwargs):
        np.random.seed(numpy_seed)          # different drawn Runner seeds
        loader = multi_source_dataloader()
        loader['sampler'].pop('seed')       # the sampler takes runner.seed
        # make_runner passes a fresh randomness=dict(seed=None), so each
        # Runner draws its own seed.
        return make_runner(tmp_path, name, loader, max_iters=6, **kwargs)

    full = runner('full_noseed', 1)
    full_calls, _ = train_and_record(full)
    resumed = runner('resumed_noseed', 2, resume=True,
                     load_from=str(tmp_path / 'full_noseed' / 'iter_3.pth'))
    assert resumed.seed != full.seed        # precondition: seeds differ
    calls, _ = train_and_record(resumed)
    assert resumed.seed == full.seed        # the Runner restored its seed
    assert calls == full_calls[12:]         # ...and the data stream?


@LOOPS.register_module(name='CompatTestRecordingValLoop', force=True)
class RecordingValLoop(BaseLoop):
    """A validation loop that records the iterations it runs after."""

    def __init__(self, runner, dataloader, evaluator):
        super().__init__(runner, dataloader)
        self.after_iters = []

    def run(self):
        self.after_iters.append(self.runner.iter)


def test_resumable_loop_validates_from_val_begin_and_at_the_end(tmp_path):
    runner = make_runner(
        tmp_path, 'val', toy_dataloader(), max_iters=5,
        train_cfg=dict(type='ResumableIterBasedTrainLoop', max_iters=5,
                       val_begin=2, val_interval=2),
        val_dataloader=toy_dataloader(),
        val_cfg=dict(type='CompatTestRecordingValLoop'),
        val_evaluator=dict(type='Evaluator', metrics=[]))
    runner.train()
    assert runner.val_loop.after_iters == [2, 4, 5]


# --------------------------------------------------------------------------
# 7. config_check and the SuggestingRegistry
# --------------------------------------------------------------------------
def test_unknown_type_names_path_and_close_match():
    with pytest.raises(ConfigError) as info:
        check_config(dict(model=dict(type='RecAModel', umm=dict(
            type='JanusProUM'))))
    message = str(info.value)
    assert message.startswith('model.umm:')
    assert 'JanusProUM' in message and 'JanusProUMM' in message


def test_unknown_type_in_list_names_index(image_folder):
    cfg = dict(train_dataloader=dict(dataset=dict(
        type='MultiSourceDataset', sources=dict(recon=dict(
            type='ImageFolder', root=str(image_folder),
            pipeline=[dict(type='LoadImage'),
                      dict(type='ImageView', und_size=8)])))))
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    message = str(info.value)
    assert 'train_dataloader.dataset.sources.recon.pipeline[1]' in message
    assert 'ImageViews' in message


def test_unknown_key_names_path_and_close_key(image_folder):
    cfg = dict(train_dataloader=dict(dataset=dict(
        type='MultiSourceDataset', sources=dict(recon=dict(
            type='ImageFolder', root=str(image_folder),
            pipeline=[dict(type='ImageViews', und_sise=8)])))))
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    message = str(info.value)
    assert 'train_dataloader.dataset.sources.recon.pipeline[0]' in message
    assert "'und_sise'" in message and 'und_size' in message


def test_validate_config_runs_for_sources(tmp_path):
    cfg = dict(train_dataloader=dict(dataset=dict(
        type='MultiSourceDataset', sources=dict(recon=dict(
            type='ImageFolder', root=str(tmp_path / 'no_images_here'))))))
    with pytest.raises(ConfigError, match='no_images_here') as info:
        check_config(cfg)
    assert 'train_dataloader.dataset.sources.recon' in str(info.value)


def test_misspelt_top_level_key_is_caught():
    with pytest.raises(ConfigError) as info:
        check_config(dict(optim_wraper=dict(type='OptimWrapper')))
    assert "'optim_wraper'" in str(info.value)
    assert 'optim_wrapper' in str(info.value)


@pytest.mark.parametrize('key', ['max_iters', 'data_root', 'train_pipeline'])
def test_top_level_helper_variables_pass(key):
    # Configs keep helper variables at the top level (the demo config has
    # max_iters; MM-style configs have data_root); the Runner ignores them.
    check_config({key: 'x', 'default_scope': 'reca_toolkit'})


def test_scoped_and_parent_names_pass():
    check_config(dict(
        train_dataloader=dict(
            collate_fn=dict(type='reca_toolkit.collate_by_source'),
            sampler=dict(type='InfiniteSampler', shuffle=False)),
        default_hooks=dict(checkpoint=dict(type='mmengine.CheckpointHook',
                                           interval=3)),
        optim_wrapper=dict(type='OptimWrapper',
                           optimizer=dict(type='SGD', lr=0.1))))
    with pytest.raises(ConfigError, match='collate_by_sorce'):
        check_config(dict(train_dataloader=dict(collate_fn=dict(
            type='reca_toolkit.collate_by_sorce'))))


def test_suggesting_registry_lists_close_names():
    with pytest.raises(KeyError) as info:
        MODELS.build(dict(type='JanusProUM'))
    assert 'JanusProUMM' in str(info.value)
    # Registered names still build through the same registry.
    assert MODELS.get('JanusProUMM').__name__ == 'JanusProUMM'
    assert DATASETS.build(dict(type='CompatTestCountingSource',
                               size=3)).size == 3

