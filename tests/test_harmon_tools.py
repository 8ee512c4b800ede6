"""Harmon through the command-line tools: training end to end, resume,
torchrun, sampling, evaluation, export and the feature cache."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, subprocess_env
from test_distributed import free_port
from test_train_e2e import losses, run_tool

CONFIG = str(REPO / 'tests/configs/tiny_harmon.py')


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('harmon_full')
    run_tool('tools/train.py', CONFIG, '--work-dir', work_dir)
    return work_dir


def test_loss_falls_and_outputs_are_written(full_run):
    log = losses(full_run)
    assert sorted(log) == list(range(1, 31))
    first = sum(log[i] for i in range(1, 6)) / 5
    last = sum(log[i] for i in range(26, 31)) / 5
    assert last < first - 0.5, (first, last)
    scalars = [json.loads(line) for line in next(
        full_run.glob('*/vis_data/scalars.json')).read_text().splitlines()]
    assert {'loss_recon', 'loss_i2t', 'acc_i2t', 'lr'} <= set(scalars[0])
    assert scalars[-1]['loss_recon'] < scalars[0]['loss_recon']
    grid = next(full_run.glob('*/vis_data/vis_image/reconstruction_30.png'))
    # Two 32 px training images above their reconstructions.
    assert Image.open(grid).size[0] >= 2 * 32
    state = torch.load(full_run / 'iter_30.pth', weights_only=True)
    assert any(k.startswith('umm.mar.diffloss.') for k in state['state_dict'])


def test_resume_is_bit_exact(full_run, tmp_path):
    run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path,
             '--cfg-options', 'train_cfg.max_iters=20')
    run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path, '--resume')
    full, resumed = losses(full_run), losses(tmp_path)
    assert [resumed[i] for i in range(1, 31)] == \
        [full[i] for i in range(1, 31)]
    one = torch.load(full_run / 'iter_30.pth', weights_only=True)
    two = torch.load(tmp_path / 'iter_30.pth', weights_only=True)
    for name, value in one['state_dict'].items():
        assert torch.equal(two['state_dict'][name], value), name
    for a, b in zip(one['optimizer']['state'].values(),
                    two['optimizer']['state'].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert one['param_schedulers'] == two['param_schedulers']


def test_torchrun_two_processes_equal_one(tmp_path):
    """Two processes of 2 samples per source each train the weights one
    process of 4 does."""
    env = subprocess_env(PORT=str(free_port()), OMP_NUM_THREADS='1',
                         PYTHON=sys.executable)
    common = ['--cfg-options', 'train_cfg.max_iters=3', 'custom_hooks=[]']
    run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path / 'one',
             *common)
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
         str(tmp_path / 'two'), *common, 'train_dataloader.batch_size=2'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = torch.load(tmp_path / 'one/iter_3.pth', weights_only=True)
    two = torch.load(tmp_path / 'two/iter_3.pth', weights_only=True)
    for name, value in one['state_dict'].items():
        torch.testing.assert_close(two['state_dict'][name], value,
                                   rtol=1e-4, atol=1e-5, msg=name)
    # The logged losses are the global batch's, as one process logs them.
    full, ddp = losses(tmp_path / 'one'), losses(tmp_path / 'two')
    for step in (1, 2, 3):
        assert ddp[step] == pytest.approx(full[step], rel=1e-4), step
    assert full[3] != full[1]


@pytest.fixture(scope='module')
def checkpoint(full_run):
    return full_run / 'iter_30.pth'


def test_generate_writes_prompt_and_reconstruction_pngs(checkpoint, tmp_path,
                                                        image_folder):
    image = sorted(image_folder.glob('*.png'))[0]

    def generate(out):
        run_tool('tools/generate.py', CONFIG, checkpoint, '--prompt',
                 'a red circle', '--reconstruct', image, '--out', out,
                 '--seed', '3', '--sampling', 'num_iter=4',
                 'num_sampling_steps=10')

    generate(tmp_path / 'samples')
    out = tmp_path / 'samples'
    names = sorted(p.name for p in out.glob('*.png'))
    assert names == ['prompt_000.png', 'prompts_grid.png', 'recon_000.png',
                     'recon_grid.png']
    assert Image.open(out / 'prompt_000.png').size == (32, 32)
    generate(tmp_path / 'again')
    assert np.array_equal(
        np.asarray(Image.open(out / 'prompt_000.png')),
        np.asarray(Image.open(tmp_path / 'again' / 'prompt_000.png')))


def test_test_py_scores_reconstructions(checkpoint, tmp_path):
    proc = run_tool('tools/test.py', CONFIG, checkpoint, '--work-dir',
                    tmp_path)
    card = json.loads(next(tmp_path.glob('*/eval_card.json')).read_text())
    assert card['sampling']['generator'] == 'MaskedAutoregressiveGenerator'
    assert card['sampling']['image_tokens'] == 64
    assert 'psnr' in json.dumps(card['metrics']).lower(), proc.stdout


def test_export_writes_a_harmon_folder_that_trains_on(checkpoint, tmp_path):
    out = tmp_path / 'harmon'
    run_tool('tools/model_converters/export_hf.py', CONFIG, checkpoint, out)
    exported = torch.load(out / 'harmon_1.5b.pth', weights_only=True)
    trained = torch.load(checkpoint, weights_only=True)['state_dict']
    torch.testing.assert_close(
        exported['mar.diffloss.net.input_proj.weight'],
        trained['umm.mar.diffloss.net.input_proj.weight'])
    torch.testing.assert_close(
        exported['llm.model.norm.weight'], trained['umm.llm.norm.weight'])
    # The exported folder is a weights folder the toolkit trains from.
    work = tmp_path / 'work'
    run_tool('tools/train.py', CONFIG, '--work-dir', work, '--cfg-options',
             f'model.umm.pretrained={out}', 'model.umm.config=None',
             'model.umm.tokenizer=None', 'train_cfg.max_iters=1',
             'custom_hooks=[]')
    assert (work / 'iter_1.pth').is_file()


def test_feature_cache_trains_like_the_images(tmp_path):
    root = tmp_path / 'features'
    scenes = 'train_dataloader.dataset.sources.recon.num_scenes=8'
    run_tool('tools/misc/cache_features.py', CONFIG, '--out', root,
             '--shard-size', 4, '--batch-size', 4, '--cfg-options', scenes)
    meta = json.loads((root / 'meta.json').read_text())
    assert meta['num_samples'] == 8
    from reca_toolkit.datasets import FeatureCache
    sample = FeatureCache(root).prepare(3, draw=3)
    # VAE latents of both 32 px views: 4 channels on an 8 x 8 grid.
    assert sample['und_features'].shape == (4, 8, 8)
    assert sample['gen_targets'].dtype == torch.float32
