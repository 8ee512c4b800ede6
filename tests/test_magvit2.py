"""MAGVIT-v2 (LFQ) tokenizer: bit order, shapes, published layout, loading.

Two fixtures in ``tests/fixtures`` were established offline from
``showlab/Show-o`` (``models/modeling_magvitv2.py`` and
``models/common_modules.py``, commit 45a5a2d), whose code was run, not
copied, by ``tools/model_converters/magvit2_check.py --showo-repo``:

- ``magvitv2_keys.txt``: ``key shape dtype`` of every state-dict entry of
  upstream's real-size ``MAGVITv2()`` built on the meta device (382 entries,
  95,387,004 parameters). Show-o loads ``showlab/magvitv2`` through its copy
  of diffusers' ``ModelMixin.from_pretrained`` with accelerate, which raises
  on any missing key, so the published file holds at least these keys
  (buffers included). The published file itself was not available.
- ``magvitv2_reference.safetensors``: upstream's ``get_code`` and
  ``decode_code`` outputs for one 32 x 48 image through upstream's encoder,
  decoder and quantizer at the ``TINY`` sizes, with the weights of
  :func:`reference_weights` (seed 0).
"""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from reca_toolkit.models.encoders.magvit2 import (MAGVITV2_CONFIG,
                                                  LookupFreeQuantizer,
                                                  MAGVITv2Tokenizer)

FIXTURES = Path(__file__).parent / 'fixtures'
# Asymmetric like the published model (different encoder and decoder
# multipliers and depths, a width change in each); 4 px per code.
TINY = dict(ch=32, encoder_ch_mult=(1, 2, 2), encoder_num_res_blocks=(1, 2, 1),
            decoder_ch_mult=(1, 1, 2), decoder_num_res_blocks=(2, 1, 1),
            z_channels=6)
# What Show-o's MAGVITv2.save_pretrained writes: it takes no arguments.
PUBLISHED_CONFIG = {'_class_name': 'MAGVITv2', '_diffusers_version': '0.30.1'}


def reference_weights(model, seed=0):
    """Deterministic weights by key (sorted): conv/linear ``randn /
    sqrt(fan_in)``, norm weights ``1 + 0.1 randn``, biases ``0.1 randn``,
    the LFQ tables as built."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in sorted(model.state_dict().items()):
        if key.startswith('quantize.'):
            state[key] = value.clone()
            continue
        noise = torch.randn(value.shape, generator=generator)
        if value.dim() > 1:
            state[key] = noise / math.sqrt(value[0].numel())
        elif key.endswith('weight'):
            state[key] = 1 + 0.1 * noise
        else:
            state[key] = 0.1 * noise
    return state


@pytest.fixture(scope='module')
def tiny():
    model = MAGVITv2Tokenizer(**TINY).eval()
    model.load_weights(reference_weights(model))
    return model


@pytest.fixture(scope='module')
def images():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1


def write_folder(folder, state, config, weights='pytorch_model.safetensors'):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'config.json').write_text(json.dumps(config))
    if weights.endswith('.safetensors'):
        save_file({k: v.contiguous() for k, v in state.items()},
                  str(folder / weights))
    else:
        torch.save(dict(state), folder / weights)
    return folder


def test_lfq_codes_are_sign_bits_channel_0_most_significant():
    quantizer = LookupFreeQuantizer(3)
    # One 2 x 2 latent; channels are the bits of each position.
    latents = torch.tensor([[[0.5, -0.1], [1.0, -1.0]],
                            [[-1.0, 0.0], [1.0, -2.0]],
                            [[2.0, 3.0], [1.0, -0.5]]])[None]
    # (+,-,+) = 101b = 5; (-,0,+) = 001b = 1 (0 is bit 0); 111b; 000b.
    assert quantizer.codes(latents).tolist() == [[5, 1, 7, 0]]
    signs = torch.where(latents > 0, 1.0, -1.0)
    assert torch.equal(quantizer.latents(torch.tensor([[5, 1, 7, 0]]),
                                         (2, 2)), signs)


def test_lfq_table_of_the_published_width():
    quantizer = LookupFreeQuantizer(13)
    assert quantizer.num_codes == 8192
    assert quantizer.power_vals.tolist() == [2 ** k for k in range(12, -1, -1)]
    assert quantizer.embedding[4096].tolist() == [1.0] + [-1.0] * 12
    assert quantizer.embedding[1].tolist() == [-1.0] * 12 + [1.0]
    every = torch.arange(8192)[None]
    assert torch.equal(quantizer.codes(quantizer.latents(every, (64, 128))),
                       every)


def test_matches_upstream_reference():
    reference = load_file(str(FIXTURES / 'magvitv2_reference.safetensors'))
    model = MAGVITv2Tokenizer(**TINY).eval()
    model.load_weights(reference_weights(model))
    codes = model.encode(reference['pixels'])
    assert torch.equal(codes, reference['codes'])
    decoded = model.decode(codes, grid=model.grid((32, 48)))
    torch.testing.assert_close(decoded, reference['decoded'].clamp(-1, 1),
                               atol=1e-4, rtol=0)


def test_encode_decode_shapes_at_two_sizes(tiny, images):
    assert tiny.downsample == 4 and tiny.num_codes == 64
    codes = tiny.encode(images)
    assert codes.dtype == torch.long and codes.shape == (2, 64)
    assert 0 <= codes.min() and codes.max() < 64
    pixels = tiny.decode(codes)
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == torch.float32
    assert pixels.abs().max() <= 1
    wide = tiny.encode(images[:1, :, :16, :24])
    assert wide.shape == (1, 24) and tiny.grid((16, 24)) == (4, 6)
    assert tiny.decode(wide, grid=(4, 6)).shape == (1, 3, 16, 24)
    with pytest.raises(ValueError, match='not a square grid'):
        tiny.decode(wide)
    with pytest.raises(ValueError, match='multiple of the MAGVIT-v2 '
                       'downsampling, 4 px'):
        tiny.encode(images[:, :, :30, :30])
    with pytest.raises(ValueError, match=r'\[0, 64\); got \[0, 64\]'):
        tiny.decode(torch.tensor([[0, 64, 1, 2]]))


def test_published_layout_keys_shapes_and_size():
    expected = {}
    for line in (FIXTURES / 'magvitv2_keys.txt').read_text().splitlines():
        key, shape, dtype = line.split()
        expected[key] = (tuple(int(s) for s in shape.split('x')), dtype)
    with torch.device('meta'):
        model = MAGVITv2Tokenizer.from_config(PUBLISHED_CONFIG)
    assert model.config == MAGVITV2_CONFIG
    built = {k: (tuple(v.shape), str(v.dtype).removeprefix('torch.'))
             for k, v in model.state_dict().items()}
    assert built == expected
    assert sum(p.numel() for p in model.parameters()) == 95_387_004
    assert model.num_codes == 8192 and model.downsample == 16
    assert model.grid(256) == (16, 16) and model.grid(512) == (32, 32)


@pytest.mark.parametrize('weights', ['pytorch_model.safetensors',
                                     'pytorch_model.bin'])
def test_from_pretrained_round_trip(tiny, images, tmp_path, weights):
    folder = write_folder(tmp_path / 'magvitv2', tiny.state_dict(),
                          {**PUBLISHED_CONFIG, **TINY}, weights)
    loaded = MAGVITv2Tokenizer.from_pretrained(folder)
    assert not loaded.training
    assert torch.equal(loaded.encode(images), tiny.encode(images))
    assert loaded.quantize.power_vals.dtype == torch.long


def test_registry_builds_it():
    from reca_toolkit.registry import ENCODERS
    model = ENCODERS.build(dict(type='MAGVITv2Tokenizer', **TINY))
    assert isinstance(model, MAGVITv2Tokenizer) and model.config['ch'] == 32


def test_bad_folders_fail_naming_what(tiny, tmp_path):
    state = tiny.state_dict()
    config = {**PUBLISHED_CONFIG, **TINY}
    missing = {k: v for k, v in state.items() if k != 'decoder.conv_out.bias'}
    folder = write_folder(tmp_path / 'missing', missing, config)
    with pytest.raises(ValueError, match=r"missing/pytorch_model\.safetensors"
                       r"' does not match .* missing \['decoder\.conv_out\."
                       r"bias'\], unexpected \[\]"):
        MAGVITv2Tokenizer.from_pretrained(folder)
    extra = {**state, 'quantize.codebook': torch.zeros(1)}
    folder = write_folder(tmp_path / 'extra', extra, config,
                          'pytorch_model.bin')
    with pytest.raises(ValueError,
                       match=r"unexpected \['quantize\.codebook'\]"):
        MAGVITv2Tokenizer.from_pretrained(folder)
    wide = {**state, 'encoder.conv_in.bias': torch.zeros(33)}
    folder = write_folder(tmp_path / 'shape', wide, config)
    with pytest.raises(ValueError, match=r'encoder\.conv_in\.bias \(33,\) '
                       r'!= \(32,\)'):
        MAGVITv2Tokenizer.from_pretrained(folder)
    flipped = state['quantize.power_vals'].flip(0)
    reversed_bits = {**state, 'quantize.power_vals': flipped}
    folder = write_folder(tmp_path / 'bits', reversed_bits, config)
    with pytest.raises(ValueError, match='quantize.power_vals is not the LFQ '
                       'table of channel 0 = most significant bit'):
        MAGVITv2Tokenizer.from_pretrained(folder)
    folder = write_folder(tmp_path / 'unknown', state, {**config, 'chh': 3})
    with pytest.raises(ValueError, match=r"unknown MAGVIT-v2 config keys "
                       r"\['chh'\]"):
        MAGVITv2Tokenizer.from_pretrained(folder)
    folder = write_folder(tmp_path / 'other', state,
                          {**config, '_class_name': 'VQModel'})
    with pytest.raises(ValueError, match="_class_name 'VQModel'"):
        MAGVITv2Tokenizer.from_pretrained(folder)
    folder = write_folder(tmp_path / 'empty', state, config)
    (folder / 'pytorch_model.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match='has no weights file'):
        MAGVITv2Tokenizer.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match='no config.json'):
        MAGVITv2Tokenizer.from_pretrained(tmp_path / 'showlab/magvitv2')
    with pytest.raises(ValueError, match='local folders only'):
        MAGVITv2Tokenizer.from_pretrained(folder, local_files_only=False)


def test_inconsistent_configs_are_refused():
    with pytest.raises(ValueError, match='encoder_ch_mult has 3 levels but '
                       'encoder_num_res_blocks has 2'):
        MAGVITv2Tokenizer(**{**TINY, 'encoder_num_res_blocks': (1, 1)})
    with pytest.raises(ValueError, match='the encoder has 3 levels and the '
                       'decoder 2'):
        MAGVITv2Tokenizer(**{**TINY, 'decoder_ch_mult': (1, 2),
                             'decoder_num_res_blocks': (1, 1)})
    with pytest.raises(ValueError, match='ch \\* 1 = 16 is not a multiple'):
        MAGVITv2Tokenizer(**{**TINY, 'ch': 16})
