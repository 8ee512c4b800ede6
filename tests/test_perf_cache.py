"""The feature cache: training from cached SigLIP features and VQ codes is
training from the images."""
import json

import pytest
import torch
from mmengine.hooks import Hook

from conftest import REPO, build_tiny_model, random_images, to_float
from reca_toolkit.datasets import FeatureCache
from test_train_e2e import run_tool

IMAGES = str(REPO / 'tests/configs/tiny_reca.py')
CACHED = str(REPO / 'tests/configs/tiny_reca_cached.py')
SCENES = {'train_dataloader.dataset.sources.recon.num_scenes': 20}


class Recorder(Hook):

    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append({k: float(v.detach()) for k, v in outputs.items()
                            if k.startswith(('loss', 'acc'))})


def train(config, work_dir, options):
    from reca_toolkit.engine.launch import build_runner, load_config
    cfg = load_config(config, dict(options, **{
        'train_cfg.max_iters': 4, 'custom_hooks': []}), str(work_dir))
    cfg.experiment_name = work_dir.name
    runner = build_runner(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    runner.train()
    return recorder.losses, runner.model.state_dict()


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp('cache') / 'features'
    options = [f'{k}={v}' for k, v in SCENES.items()]
    run_tool('tools/misc/cache_features.py', IMAGES, '--out', root,
             '--shard-size', 8, '--batch-size', 3, '--cfg-options', *options)
    return root


def test_cache_holds_every_sample_in_order(cache):
    meta = json.loads((cache / 'meta.json').read_text())
    assert meta['num_samples'] == 20 and meta['num_shards'] == 3
    source = FeatureCache(cache)
    sample = source.prepare(13, draw=13)
    assert sample['und_features'].shape == (16, 64)
    assert sample['gen_targets'].shape == (16, )
    assert sample['draw'] == 13


def test_training_from_the_cache_equals_training_from_images(cache,
                                                             tmp_path):
    images = train(IMAGES, tmp_path / 'images', SCENES)
    cached = train(CACHED, tmp_path / 'cached', {
        'train_dataloader.dataset.sources.recon.root': str(cache)})
    for step, (a, b) in enumerate(zip(images[0], cached[0], strict=True)):
        assert b == pytest.approx(a, abs=1e-5), step
    for name, value in images[1].items():
        torch.testing.assert_close(cached[1][name], value, atol=1e-5,
                                   rtol=1e-4, msg=name)


def test_cached_features_are_what_the_encoders_compute():
    umm = build_tiny_model().umm
    pixels = to_float(random_images(2))
    with torch.no_grad():
        cached = umm.encode_understanding(
            und_features=umm.understanding_features(pixels))
        direct = umm.encode_understanding(pixels)
    torch.testing.assert_close(cached, direct)


def test_features_of_a_trained_encoder_cannot_be_cached():
    umm = build_tiny_model(frozen=['vqmodel']).umm
    with pytest.raises(ValueError, match="'vision_model' is frozen"):
        umm.understanding_features(to_float(random_images(1)))


def test_missing_cache_fails_naming_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='cache_features.py'):
        FeatureCache(tmp_path / 'nowhere')
