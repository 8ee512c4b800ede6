"""Fault injection, configs: the typos that passed pre-flight and failed
late -- after training until the first save, after the work dir was made,
inside torch -- now fail in pre-flight, before the work dir exists, naming
the key, its value and the closest valid name.

docs/reliability.md tabulates them.
"""
import re
import shutil

import pytest

from conftest import REPO
from fault_injection import CONFIG, child
from reca_toolkit.engine import ConfigError, load_config

TYPOS = {
    # **kwargs forwarded to Runner.save_checkpoint: TypeError at the first
    # save, every iteration before it lost.
    'hook kwarg': ('default_hooks.checkpoint.intervl', 1,
                   "default_hooks.checkpoint: 'intervl' is not an argument "
                   'of CheckpointHook (given intervl=1); did you mean '
                   'interval?'),
    # Untyped dicts the Runner builds: DataLoader(**cfg), the loop,
    # set_randomness, the clipping function.
    'dataloader key': ('train_dataloader.batch_sizee', 4,
                       "train_dataloader: 'batch_sizee' is not an argument "
                       'of DataLoader (given batch_sizee=4); did you mean '
                       'batch_size'),
    'randomness key': ('randomness.sed', 1,
                       "randomness: 'sed' is not an argument of "
                       'Runner.set_randomness (given sed=1); did you mean '
                       'seed?'),
    'clip_grad key': ('optim_wrapper.clip_grad.max_nrom', 1.0,
                      "optim_wrapper.clip_grad: 'max_nrom' is not an "
                      'argument of clip_grad_norm_ (given max_nrom=1.0); '
                      'did you mean max_norm?'),
    # **kwargs of a wrapper, forwarded to its base class (DDP).
    'wrapper kwarg': ('model_wrapper_cfg.find_unused_parameter', True,
                      "model_wrapper_cfg: 'find_unused_parameter' is not an "
                      'argument of MMDistributedDataParallel (given '
                      'find_unused_parameter=True); did you mean '
                      'find_unused_parameters'),
    # Values torch or the loop failed on without naming the key.
    'max_iters word': ('train_cfg.max_iters', 'ten',
                       "train_cfg.max_iters = 'ten' is a str; max_iters "
                       'must be an integer'),
    'string lr': ('optim_wrapper.optimizer.lr', '1e-3',
                  "optim_wrapper.optimizer.lr = '1e-3' is a str; lr must be "
                  'a number; write 1e-3 without quotes'),
    'fractional batch size': ('train_dataloader.batch_size', 2.5,
                              'train_dataloader.batch_size = 2.5 is a '
                              'float; batch_size must be an integer'),
}


@pytest.mark.parametrize('typo', list(TYPOS))
def test_typo_fails_in_preflight_naming_key_value_and_fix(tmp_path, typo):
    key, value, message = TYPOS[typo]
    work_dir = tmp_path / 'work'
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG, {key: value}, str(work_dir))
    assert str(info.value).startswith(message), str(info.value)
    assert not work_dir.exists()


def test_untyped_train_loop_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(
            "train_cfg: 'max_iter' is not an argument of IterBasedTrainLoop "
            '(given max_iter=3); did you mean max_iters')):
        load_config(CONFIG, {'train_cfg': dict(_delete_=True, by_epoch=False,
                                               max_iter=3)}, str(tmp_path))


def test_string_lr_in_a_config_file(tmp_path):
    config = tmp_path / 'string_lr.py'
    config.write_text(f"_base_ = ['{CONFIG}']\n"
                      "optim_wrapper = dict(optimizer=dict(lr='2e-5'))\n")
    with pytest.raises(ConfigError, match=re.escape(
            "optim_wrapper.optimizer.lr = '2e-5' is a str; lr must be a "
            'number; write 2e-5 without quotes')):
        load_config(str(config), work_dir=str(tmp_path / 'work'))


@pytest.fixture
def weights(tmp_path):
    """A copy of the tiny pretrained Janus folder."""
    folder = tmp_path / 'Janus-toy'
    shutil.copytree(REPO / 'projects/janus_toy/pretrained', folder)
    return folder


@pytest.mark.parametrize('keep', [0.5, 1e-6], ids=['half', 'five bytes'])
def test_truncated_safetensors_fail_in_preflight_naming_the_file(
        tmp_path, weights, keep):
    config = str(REPO / 'configs/reca/janus_toy.py')
    load_config(config, {'model.umm.pretrained': str(weights)},
                str(tmp_path / 'work'))                  # complete: passes
    shard = weights / 'model.safetensors'
    data = shard.read_bytes()
    shard.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ConfigError) as info:
        load_config(config, {'model.umm.pretrained': str(weights)},
                    str(tmp_path / 'work'))
    assert str(info.value).startswith(
        f"model.umm.pretrained = '{weights}': '{shard}' is not a whole "
        'safetensors file (it is ')
    assert 'truncated' in str(info.value)
    assert not (tmp_path / 'work').exists()


def test_train_cli_fails_before_writing_on_a_hook_typo(tmp_path):
    """What the user of tools/train.py gets: status 1, the message, no work
    directory -- not a TypeError after training until the first save."""
    work_dir, log = tmp_path / 'work', tmp_path / 'train.log'
    with child([CONFIG, '--work-dir', work_dir, '--cfg-options',
                'default_hooks.checkpoint.intervl=1'], log) as process:
        process.join(timeout=300)
        assert process.exitcode == 1
    assert ("'intervl' is not an argument of CheckpointHook (given "
            'intervl=1); did you mean interval?') in log.read_text()
    assert not work_dir.exists()
