"""The tiny pretrained Harmon: its latent tokenizer and shipped checkpoint."""
import sys
from pathlib import Path

import pytest
import torch

_TESTS = str(Path(__file__).resolve().parents[3] / 'tests')
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from conftest import REPO, no_network, registered  # noqa: E402,F401

import projects.harmon_toy.harmon_toy  # noqa: E402,F401  registers
from projects.janus_toy.janus_toy import GenEvalShapesScenes  # noqa: E402

CHECKPOINT = REPO / 'projects/harmon_toy/pretrained'
CONFIG = 'projects/harmon_toy/configs/reca.py'


def scene_pixels(num, seed=123):
    from PIL import Image

    from reca_toolkit.datasets.transforms import ImageViews
    scenes = GenEvalShapesScenes(num_scenes=num, seed=seed,
                                 include_held_out=True)
    view = ImageViews(und_size=64)
    samples = [scenes.raw(i) for i in range(num)]
    pixels = torch.stack([view(dict(img=Image.fromarray(s['img'])))
                          ['und_pixels'] for s in samples]).float() / 127.5 - 1
    return pixels, samples


@pytest.fixture(scope='module')
def umm():
    from reca_toolkit.engine.inference import load_model
    model, _ = load_model(str(REPO / CONFIG))
    return model.umm


def test_patch_latents_round_trip_and_decode_to_the_nearest_patch():
    from reca_toolkit.registry import ENCODERS
    tokenizer = ENCODERS.build(dict(type='PatchLatentTokenizer', vae=None))
    pixels, _ = scene_pixels(8)
    latents = tokenizer.encode(pixels)
    assert latents.shape == (8, 16, 4, 4)
    assert tokenizer.token_dim == 16 and tokenizer.grid(64) == (4, 4)
    assert torch.equal(tokenizer.decode(latents), pixels)
    # Unit scale per channel over the table, as Harmon's scaled latents.
    points = tokenizer.points
    assert torch.allclose(points.std(0), torch.ones(16))
    # A diffusion head's sample lands near, not on, a latent: decoding
    # takes the nearest entry. The closest two entries are this far apart.
    gap = torch.cdist(points, points).fill_diagonal_(1e9).min()
    noise = torch.randn(latents.shape, generator=torch.Generator()
                        .manual_seed(0))
    noisy = latents + noise * (0.2 * gap / noise.norm(dim=1, keepdim=True))
    assert torch.equal(tokenizer.decode(noisy), pixels)


def test_checkpoint_is_small_safetensors_only():
    names = {p.name for p in CHECKPOINT.iterdir()}
    assert {'harmon_0.5b.safetensors', 'kl16.safetensors',
            'config.json'} <= names
    assert not any(n.endswith(('.pth', '.ckpt', '.bin')) for n in names)
    assert sum(p.stat().st_size for p in CHECKPOINT.iterdir()) < 20e6


def test_checkpoint_describes_scenes(umm):
    pixels, samples = scene_pixels(8)
    conversations = [s['conversations'] for s in samples]
    right = umm.understanding_loss(pixels, conversations)
    wrong = umm.understanding_loss(pixels, conversations[1:]
                                   + conversations[:1])
    assert right['acc'] > 0.9
    assert right['loss'] < wrong['loss'] - 1.0


def test_checkpoint_samples_scenes_not_noise(umm):
    prompts = [f'a photo of a {shape}'
               for shape in ('circle', 'square', 'triangle')] * 2
    codes = {}
    for steps in (500, 25):
        images = umm.generate(umm.text_condition(prompts),
                              generator=torch.Generator().manual_seed(0),
                              num_sampling_steps=steps)
        assert images.shape == (6, 3, 64, 64)
        codes[steps] = umm.gen_tokenizer.lookup.encode(images)
    objects = {steps: float((c > 0).sum(1).float().mean())
               for steps, c in codes.items()}
    # With the configured 500 diffusion steps, scenes of a few objects;
    # respaced to 25 steps the sampler diverges and decodes every slot as
    # some object (why the config samples with 500).
    assert umm.mar.diffloss.num_sampling_steps == 500
    assert objects[500] < 4, objects
    assert objects[25] > 12, objects
