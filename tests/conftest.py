"""Shared fixtures: no network, tiny real Janus models, images on disk."""
import copy
import os
import random
import sys
from pathlib import Path

import pytest
import torch

os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['TRANSFORMERS_OFFLINE'] = '1'

REPO = Path(__file__).resolve().parents[1]
NETGUARD = REPO / 'tests' / 'netguard'
sys.path.insert(0, str(REPO))  # projects/ import as `projects.<name>`
sys.path.insert(0, str(NETGUARD))
import netguard  # noqa: E402

NetworkAccessError = netguard.NetworkAccessError


def subprocess_env(**overrides):
    """The environment of a test's child processes: offline, the repository
    importable, and the network guard installed at their start-up by
    ``netguard/sitecustomize.py``."""
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    inherited = [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                 if p and p not in (str(NETGUARD), str(REPO))]
    env['PYTHONPATH'] = os.pathsep.join([str(NETGUARD), str(REPO)] +
                                        inherited)
    env.update(overrides)
    return env


@pytest.fixture(autouse=True, scope='session')
def no_network():
    """Any connection or name lookup beyond loopback fails the test, in this
    process and in the processes it starts: spawned workers inherit
    ``os.environ``, which gets :func:`subprocess_env`'s PYTHONPATH."""
    patch = pytest.MonkeyPatch()
    patch.setenv('PYTHONPATH', subprocess_env()['PYTHONPATH'])
    undo = netguard.install()
    yield
    undo()
    patch.undo()


@pytest.fixture(autouse=True, scope='session')
def registered():
    from reca_toolkit.utils import register_all_modules
    register_all_modules()


def tiny_model_cfg():
    """The demo's tiny RecAModel config (real Janus classes, random init)."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO / 'configs/_base_/models/janus_tiny.py'))
    return copy.deepcopy(cfg.model.to_dict())


def build_tiny_model(seed=0, objectives=None, **umm_overrides):
    """A tiny RecAModel; ``umm_overrides`` update the JanusProUMM config."""
    from reca_toolkit.registry import MODELS
    cfg = tiny_model_cfg()
    cfg['umm'].update(umm_overrides)
    if objectives is not None:
        cfg['objectives'] = objectives
    torch.manual_seed(seed)
    return MODELS.build(cfg)


@pytest.fixture
def tiny_model():
    return build_tiny_model()


def assert_same_state(actual, expected, where='state'):
    """``actual`` equals ``expected`` exactly: tensors bit for bit, nested
    dicts and lists entry by entry; ``where`` names the first difference."""
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected), where
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), (where, set(actual) ^
                                              set(expected))
        for key, value in expected.items():
            assert_same_state(actual[key], value, f'{where}.{key}')
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_state(a, e, f'{where}[{i}]')
    else:
        assert actual == expected, (where, actual, expected)


def random_images(batch, size=64, seed=0):
    """uint8 ``[B, 3, size, size]`` rendered shape scenes."""
    from reca_toolkit.datasets.shapes import random_scene, render
    rng = random.Random(seed)
    images = [torch.from_numpy(render(random_scene(rng), size).copy())
              for _ in range(batch)]
    return torch.stack(images).permute(0, 3, 1, 2).contiguous()


def to_float(images):
    return images.float() / 127.5 - 1


@pytest.fixture
def image_folder(tmp_path):
    """A folder of rendered scenes as png, jpg and webp, some nested."""
    from PIL import Image

    from reca_toolkit.datasets.shapes import random_scene, render
    root = tmp_path / 'images'
    rng = random.Random(0)
    for i, (sub, ext) in enumerate([('', 'png'), ('', 'jpg'), ('a', 'webp'),
                                    ('a/b', 'png'), ('a/b', 'JPEG'),
                                    ('', 'jpg')]):
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render(random_scene(rng), 64)).save(
            folder / f'img{i}.{ext}', format='JPEG' if ext.upper() in (
                'JPG', 'JPEG') else ext.upper())
    (root / 'notes.txt').write_text('not an image')
    return root
