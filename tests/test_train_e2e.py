"""Training end to end through tools/train.py on the tiny real Janus."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, assert_same_state, subprocess_env

CONFIG = str(REPO / 'tests/configs/tiny_reca.py')


def run_tool(*args, check=True):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO,
                          env=subprocess_env(), capture_output=True,
                          text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed:\n{proc.stdout}\n{proc.stderr}')
    return proc


def losses(work_dir, key='loss'):
    """iteration -> logged ``key`` (the total loss), over every run in
    ``work_dir``."""
    out = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if key in record:
                out[record['iter']] = record[key]
    return out


def checkpoint(work_dir, step):
    return torch.load(work_dir / f'iter_{step}.pth', weights_only=True)


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('full')
    run_tool('tools/train.py', CONFIG, '--work-dir', work_dir)
    return work_dir


def test_loss_falls_and_outputs_are_written(full_run):
    log = losses(full_run)
    assert sorted(log) == list(range(1, 31))
    first = sum(log[i] for i in range(1, 6)) / 5
    last = sum(log[i] for i in range(26, 31)) / 5
    assert last < first - 0.5, (first, last)
    assert (full_run / 'iter_30.pth').is_file()
    assert (full_run / 'last_checkpoint').read_text().strip().endswith(
        'iter_30.pth')
    grids = [p.name for p in full_run.glob('*/vis_data/vis_image/*.png')]
    assert 'reconstruction_30.png' in grids and 'prompts_30.png' in grids
    scalars = (next(full_run.glob('*/vis_data/scalars.json'))
               .read_text().splitlines()[0])
    assert {'loss_recon', 'loss_i2t', 'acc_recon', 'lr'} <= set(
        json.loads(scalars))


def test_checkpoint_loads_weights_only(full_run):
    checkpoint = torch.load(full_run / 'iter_30.pth', weights_only=True)
    assert checkpoint['meta']['iter'] == 30
    assert any(k.startswith('umm.language_model.') for k in
               checkpoint['state_dict'])


def test_resume_auto_is_bit_exact(full_run, tmp_path):
    run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path,
             '--cfg-options', 'train_cfg.max_iters=20')
    # The resumed process draws a seed of its own, as every process of a
    # config without one does: the resume must restore the run's seed and
    # its data stream's.
    resumed = run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path,
                       '--resume', '--cfg-options', 'randomness.seed=None')
    assert 'data stream resumed at iteration 20' in resumed.stdout + \
        resumed.stderr
    for key in ('loss', 'lr'):
        full, interrupted = losses(full_run, key), losses(tmp_path, key)
        assert sorted(interrupted) == sorted(full) == list(range(1, 31))
        for step in range(1, 31):
            assert interrupted[step] == full[step], (key, step)
    # Resumed at 20, in the schedule's decay: a schedule that restarts, an
    # optimizer that starts afresh or another data stream all end elsewhere.
    full, again = checkpoint(full_run, 30), checkpoint(tmp_path, 30)
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        assert_same_state(again[key], full[key], key)
    assert again['optimizer']['state'], 'no Adam moments were saved'
    assert again['meta']['seed'] == full['meta']['seed'] == 42
    assert again['message_hub']['runtime_info']['data_seed'] == \
        full['message_hub']['runtime_info']['data_seed'] == 42


def test_load_from_starts_fresh_from_weights(full_run, tmp_path):
    run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path, '--load-from',
             full_run / 'iter_30.pth', '--cfg-options', 'train_cfg.max_iters=3')
    log = losses(tmp_path)
    assert sorted(log) == [1, 2, 3]
    # Trained weights start well below the random model's first loss.
    assert log[1] < losses(full_run)[1] - 0.5


@pytest.mark.parametrize('override, message', [
    ('model.umm.freez=[]', "'freez' is not an argument of JanusProUMM"),
    ("model.umm.type='JanusProUM'", 'did you mean JanusProUMM'),
    ("model.umm.pretrained='/nowhere/Janus-Pro-1B'",
     "weights folder '/nowhere/Janus-Pro-1B' does not exist"),
])
def test_bad_config_fails_before_writing(tmp_path, override, message):
    work_dir = tmp_path / 'work'
    proc = run_tool('tools/train.py', CONFIG, '--work-dir', work_dir,
                    '--cfg-options', override, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not work_dir.exists()


def test_incomplete_weights_folder_fails_before_writing(tmp_path):
    work_dir = tmp_path / 'work'
    proc = run_tool(
        'tools/train.py', REPO / 'configs/reca/janus_pro.py', '--work-dir',
        work_dir, '--cfg-options', f'model.umm.pretrained={tmp_path}',
        check=False)
    assert proc.returncode != 0
    assert f"weights folder '{tmp_path}' is incomplete" in proc.stderr
    assert 'config.json' in proc.stderr
    assert not work_dir.exists()


def image_folder_config(tmp_path, root):
    """The tiny config reading RecA images from ``root``."""
    path = tmp_path / 'from_folder.py'
    path.write_text(f"""_base_ = ['{CONFIG}']
train_dataloader = dict(dataset=dict(sources=dict(recon=dict(
    _delete_=True, type='ImageFolder', root='{root}',
    pipeline=[dict(type='LoadImage'),
              dict(type='ImageViews', und_size=64, gen_size=64)]))))
""")
    return path


def test_missing_image_folder_fails_before_writing(tmp_path):
    missing = tmp_path / 'no_images'
    proc = run_tool('tools/train.py', image_folder_config(tmp_path, missing),
                    '--work-dir', tmp_path / 'work', check=False)
    assert proc.returncode != 0
    assert f"image folder '{missing}' does not exist" in proc.stderr
    assert not (tmp_path / 'work').exists()


def test_trains_from_an_image_folder(tmp_path, image_folder):
    work_dir = tmp_path / 'work'
    run_tool('tools/train.py', image_folder_config(tmp_path, image_folder),
             '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_iters=2')
    # The reconstruction source is the folder's six images, nested ones
    # included, in place of the base config's 2000 scenes.
    meta = checkpoint(work_dir, 2)['meta']
    assert meta['dataset_meta']['sources'] == dict(recon=6, i2t=2000)
    assert sorted(losses(work_dir, 'loss_recon')) == [1, 2]


def test_corrupt_image_stops_training_naming_it(tmp_path, image_folder):
    bad = image_folder / 'a' / 'broken.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 64)
    proc = run_tool('tools/train.py', image_folder_config(tmp_path,
                                                          image_folder),
                    '--work-dir', tmp_path / 'work', check=False)
    assert proc.returncode != 0, proc.stdout
    assert f"cannot load image '{bad}'" in proc.stderr
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_skipping_bad_images_is_opt_in_and_counted(tmp_path, image_folder):
    for i in range(2):
        (image_folder / f'broken{i}.jpg').write_bytes(b'not a jpeg')
    run_tool('tools/train.py', image_folder_config(tmp_path, image_folder),
             '--work-dir', tmp_path / 'work', '--cfg-options',
             'train_dataloader.dataset.skip_bad_images=True',
             'train_cfg.max_iters=6')
    records = [json.loads(line) for line in next(
        (tmp_path / 'work').glob('*/vis_data/scalars.json')).read_text()
        .splitlines()]
    skipped = [r['data/skipped_images'] for r in records]
    assert skipped == sorted(skipped) and skipped[-1] >= 2
