"""Shared fixtures: no network, tiny real Janus models, images on disk."""
import copy
import os
import random
import socket
import sys
from pathlib import Path

import pytest
import torch

os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['TRANSFORMERS_OFFLINE'] = '1'

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # projects/ import as `projects.<name>`
LOOPBACK = {'127.0.0.1', 'localhost', '::1', '0.0.0.0', ''}


class NetworkAccessError(RuntimeError):
    pass


def _check(address):
    if isinstance(address, tuple) and address and str(address[0]) not in \
            LOOPBACK:
        raise NetworkAccessError(f'test tried to reach {address}')


@pytest.fixture(autouse=True, scope='session')
def no_network():
    """Any connection or name lookup beyond loopback fails the test; the
    distributed tests still talk to themselves over 127.0.0.1."""
    patch = pytest.MonkeyPatch()
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address):
        _check(address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        _check(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        _check((host, ))
        return getaddrinfo(host, *args, **kwargs)

    patch.setattr(socket.socket, 'connect', guarded_connect)
    patch.setattr(socket.socket, 'connect_ex', guarded_connect_ex)
    patch.setattr(socket, 'getaddrinfo', guarded_getaddrinfo)
    yield
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
