"""Fault injection, checkpoints: kill -9 during a save, a full disk, a
stale or empty ``last_checkpoint``, ``--resume`` with nothing to resume,
non-finite weights.

Every test asserts what a user gets: the message, the exit status, and that
no completed work is lost. docs/reliability.md tabulates them.
"""
import errno
import json
import math
import os
import signal

import pytest
import torch
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from fault_injection import CONFIG, SHORT, child, options
from reca_toolkit.engine import CheckpointError, NothingToResume, train
from reca_toolkit.engine.checkpoint import find_latest_checkpoint
from reca_toolkit.registry import HOOKS

# One checkpoint kept, as projects/janus_toy/configs/pretrain.py ships.
KEEP_ONE = SHORT + ['default_hooks.checkpoint.max_keep_ckpts=1']


def iterations(work_dir):
    """Iteration numbers logged by each run in ``work_dir``, oldest first."""
    runs = []
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        runs.append([json.loads(line)['iter'] for line in
                     path.read_text().splitlines()])
    return runs


def temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if '.tmp-' in p.name)


def saved_iter(path):
    return torch.load(path, weights_only=True, mmap=True)['meta']['iter']


# --------------------------------------------------------------------------
# kill -9 during the save of iteration 2, max_keep_ckpts=1
# --------------------------------------------------------------------------
KILLS = {
    # SIGKILL with this share of iter_2.pth's bytes written.
    'at byte 0': ('writing', 'iter_2.pth', 0.0),
    'at half of the bytes': ('writing', 'iter_2.pth', 0.5),
    'after the last byte, before the rename': ('writing', 'iter_2.pth', 1.0),
    # iter_2.pth complete; last_checkpoint still names iter_1.pth.
    'before last_checkpoint is renamed': ('renaming', 'last_checkpoint', 2),
    # iter_2.pth and last_checkpoint complete; iter_1.pth not yet deleted.
    'before the old checkpoint is deleted': ('deleting', ),
}


@pytest.fixture(scope='module')
def killed(tmp_path_factory):
    """work dir of every kill of :data:`KILLS`, run in child processes."""
    out = {}
    for name, fault in KILLS.items():
        work_dir = tmp_path_factory.mktemp('killed')
        args = [CONFIG, '--work-dir', work_dir, '--cfg-options',
                'train_cfg.max_iters=2', *KEEP_ONE]
        with child(args, f'{work_dir}.log', fault) as process:
            process.join(timeout=300)
            out[name] = work_dir, process.exitcode
    return out


@pytest.mark.parametrize('kill', list(KILLS))
def test_kill_during_save_keeps_a_complete_checkpoint(killed, kill):
    work_dir, status = killed[kill]
    assert status == -signal.SIGKILL, f'the run was not killed: {status}'
    expected = 1 if KILLS[kill][0] == 'writing' else 2
    latest = find_latest_checkpoint(work_dir)
    assert latest == str(work_dir / f'iter_{expected}.pth')
    assert saved_iter(latest) == expected
    if expected == 1:
        # Nothing ever carries the new checkpoint's name half-written.
        assert not (work_dir / 'iter_2.pth').exists()
        assert [name.split('.tmp-')[0] for name in temp_files(work_dir)] \
            == ['iter_2.pth']
        assert (work_dir / 'last_checkpoint').read_text() == latest


def test_resume_after_a_kill_mid_write(killed):
    """The killed run continues from iteration 1, and the partial file
    of its interrupted save is removed."""
    work_dir, _ = killed['at half of the bytes']
    train(CONFIG, work_dir=str(work_dir), resume='auto',
          cfg_options=options('train_cfg.max_iters=3', *KEEP_ONE))
    assert temp_files(work_dir) == []
    assert iterations(work_dir)[-1] == [2, 3]
    assert find_latest_checkpoint(work_dir) == str(work_dir / 'iter_3.pth')
    assert not (work_dir / 'iter_1.pth').exists()


# --------------------------------------------------------------------------
# A full disk during a save
# --------------------------------------------------------------------------
def test_disk_full_during_save_keeps_the_previous_checkpoint(
        tmp_path, monkeypatch):
    put = LocalBackend.put

    def put_until_full(self, obj, filepath):
        if '/iter_2.pth.tmp-' in filepath:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put_until_full)
    with pytest.raises(CheckpointError) as info:
        train(CONFIG, work_dir=str(tmp_path), cfg_options=options(
            'train_cfg.max_iters=3', *KEEP_ONE))
    message = str(info.value)
    assert f'could not write checkpoint {tmp_path}/iter_2.pth' in message
    assert 'No space left on device' in message
    assert f'the last checkpoint ({tmp_path}/iter_1.pth) is kept' in message
    assert saved_iter(tmp_path / 'iter_1.pth') == 1
    assert (tmp_path / 'last_checkpoint').read_text() == \
        str(tmp_path / 'iter_1.pth')
    assert temp_files(tmp_path) == []


# --------------------------------------------------------------------------
# Which checkpoint a resume takes
# --------------------------------------------------------------------------
@pytest.fixture
def checkpoints(tmp_path):
    """iter_1 and iter_2 complete, iter_3 cut short, best_* ignored."""
    for step in (1, 2, 3):
        torch.save(dict(meta=dict(iter=step), w=torch.ones(1000)),
                   tmp_path / f'iter_{step}.pth')
    full = (tmp_path / 'iter_3.pth').read_bytes()
    (tmp_path / 'iter_3.pth').write_bytes(full[:len(full) // 2])
    torch.save(dict(meta=dict(iter=9)), tmp_path / 'best_loss_iter_9.pth')
    return tmp_path


@pytest.mark.parametrize('last_checkpoint', [
    None, '', 'iter_1.pth', 'iter_3.pth', 'iter_4.pth'])
def test_resume_takes_the_newest_complete_checkpoint(checkpoints,
                                                     last_checkpoint):
    """Whatever last_checkpoint says: missing, empty, stale, naming a
    truncated or a deleted file."""
    if last_checkpoint is not None:
        named = str(checkpoints / last_checkpoint) if last_checkpoint else ''
        (checkpoints / 'last_checkpoint').write_text(named)
    assert find_latest_checkpoint(checkpoints) == \
        str(checkpoints / 'iter_2.pth')


def test_resume_with_nothing_to_resume_fails_before_writing(tmp_path):
    work_dir = tmp_path / 'work'
    with pytest.raises(NothingToResume) as info:
        train(CONFIG, work_dir=str(work_dir), resume='auto')
    assert f'{work_dir} holds no complete checkpoint' in str(info.value)
    assert '--allow-no-checkpoint' in str(info.value)
    assert not work_dir.exists()


def test_resume_from_a_truncated_file_fails_before_writing(checkpoints):
    work_dir = checkpoints / 'work'
    with pytest.raises(NothingToResume, match='incomplete'):
        train(CONFIG, work_dir=str(work_dir),
              resume=str(checkpoints / 'iter_3.pth'))
    assert not work_dir.exists()


# --------------------------------------------------------------------------
# Non-finite weights
# --------------------------------------------------------------------------
@HOOKS.register_module(force=True)
class FaultTestInfWeightHook(Hook):
    """Sets the first trainable weight to inf after iteration ``at``'s
    update, as an update that overflows would."""

    priority = 'NORMAL'        # before the CheckpointHook (VERY_LOW)
    NAME = []

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at:
            model = runner.model.module if is_model_wrapper(runner.model) \
                else runner.model
            name, weight = next((n, p) for n, p in model.named_parameters()
                                if p.requires_grad)
            weight.data.fill_(math.inf)
            self.NAME.append(name)


def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    """Weights that turned inf after iteration 2's update (finite loss and
    gradients, so the update was applied): its checkpoint is refused, and
    iteration 1's stays the last one."""
    with pytest.raises(CheckpointError) as info:
        train(CONFIG, work_dir=str(tmp_path), cfg_options=dict(
            options(*SHORT, 'train_cfg.max_iters=3'),
            custom_hooks=[dict(type='FaultTestInfWeightHook', at=2)]))
    assert str(info.value).startswith(
        'refusing to write iter_2.pth: 1 weight tensors hold NaN or inf on '
        f'this rank ({FaultTestInfWeightHook.NAME[-1]}); the last checkpoint '
        f'({tmp_path}/iter_1.pth) is kept')
    assert not (tmp_path / 'iter_2.pth').exists()
    assert find_latest_checkpoint(tmp_path) == str(tmp_path / 'iter_1.pth')
