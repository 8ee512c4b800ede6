"""Fault injection, images: every kind of odd or bad file through the one
loader, its one skip policy in the sample-grid hook, and captioned grids.

docs/reliability.md tabulates what a user gets for each.
"""
import io
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from reca_toolkit.datasets import (ImageLoadError, MultiSourceDataset,
                                   load_image)
from reca_toolkit.datasets.transforms.loading import to_rgb
from reca_toolkit.engine.hooks import EvalSampleGridHook, SampleGridHook
from reca_toolkit.visualization import make_grid

RAMP = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (8, 1))


def save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def scene(size=64, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, size * size * 3).reshape(size, size, 3)
    return (x * 0.8 + rng.integers(0, 50, x.shape)).astype(np.uint8)


def jpeg_bytes(**kwargs):
    buffer = io.BytesIO()
    Image.fromarray(scene(128)).save(buffer, 'JPEG', **kwargs)
    return buffer.getvalue()


# --------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------
def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    """The issue's ramp loaded 99.6% white."""
    path = save(tmp_path, 'ramp16.png', Image.fromarray(RAMP))
    assert Image.open(path).mode == 'I;16'
    pixels = np.asarray(load_image(path))
    assert np.array_equal(pixels[..., 0], np.rint(RAMP / 257).astype(
        np.uint8))
    assert (pixels == 255).mean() < 0.01


def test_32_bit_integer_greyscale_is_scaled_as_16_bit(tmp_path):
    """What older Pillow opens 16-bit PNGs as."""
    path = save(tmp_path, 'ramp_i.tiff', Image.fromarray(
        RAMP.astype(np.int32), 'I'))
    assert np.array_equal(np.asarray(load_image(path))[..., 1],
                          np.rint(RAMP / 257).astype(np.uint8))


def test_16_bit_rgb_png_keeps_its_colours(tmp_path):
    rgb = np.stack([RAMP, RAMP[:, ::-1], RAMP // 2], axis=-1)
    path = tmp_path / 'rgb16.png'
    cv2.imwrite(str(path), rgb[..., ::-1])          # cv2 writes BGR
    pixels = np.asarray(load_image(path)).astype(int)
    assert np.abs(pixels - np.rint(rgb / 257)).max() <= 1


def test_float_image_is_refused_naming_it(tmp_path):
    path = save(tmp_path, 'float.tiff', Image.fromarray(
        RAMP.astype(np.float32) / 65535, 'F'))
    with pytest.raises(ImageLoadError, match=re.escape(str(path))) as info:
        load_image(path)
    assert '32-bit float image has no fixed value range' in str(info.value)


def test_palette_png_keeps_colours_and_composites_transparency(tmp_path):
    rgb = scene(32)
    palette = Image.fromarray(rgb).quantize(16)
    opaque = save(tmp_path, 'p.png', palette)
    assert np.array_equal(np.asarray(load_image(opaque)),
                          np.asarray(palette.convert('RGB')))
    palette.info['transparency'] = 0
    clear = save(tmp_path, 'p_t.png', palette, transparency=0)
    pixels = np.asarray(load_image(clear))
    index = np.asarray(palette)
    assert (pixels[index == 0] == 255).all()
    assert np.array_equal(pixels[index != 0],
                          np.asarray(palette.convert('RGB'))[index != 0])


@pytest.mark.parametrize('mode', ['LA', 'RGBA', 'PA'])
def test_alpha_is_composited_onto_white(tmp_path, mode):
    base = Image.fromarray(scene(16)).convert('RGB' if mode == 'RGBA' else
                                              'L')
    alpha = Image.fromarray(np.tile(np.array([0, 255], np.uint8), (16, 8)))
    image = (base.convert('P') if mode == 'PA' else base).convert(mode)
    image.putalpha(alpha)
    # Pillow writes no PA files: that one converts in memory (LoadImage's
    # img path), through the same conversion.
    pixels = np.asarray(to_rgb(image) if mode == 'PA' else
                        load_image(save(tmp_path, f'{mode}.png', image)))
    assert (pixels[:, 0::2] == 255).all()           # transparent columns
    assert (pixels[:, 1::2] != 255).any()


def test_greyscale_with_a_transparent_level_is_composited(tmp_path):
    grey = Image.fromarray(np.array([[0, 100], [200, 0]], np.uint8))
    path = save(tmp_path, 'l_t.png', grey, transparency=0)
    assert np.asarray(load_image(path))[..., 0].tolist() == [[255, 100],
                                                             [200, 255]]


def test_bilevel_and_cmyk_convert(tmp_path):
    bits = Image.fromarray(np.array([[0, 255]], np.uint8)).convert('1')
    assert np.asarray(load_image(save(tmp_path, '1.png', bits))).tolist() \
        == [[[0, 0, 0], [255, 255, 255]]]
    cmyk = Image.fromarray(scene(16)).convert('CMYK')
    pixels = np.asarray(load_image(save(tmp_path, 'cmyk.jpg', cmyk,
                                        quality=95))).astype(int)
    assert np.abs(pixels - scene(16)).mean() < 8


# --------------------------------------------------------------------------
# Corrupt bodies
# --------------------------------------------------------------------------
@pytest.mark.parametrize('options', [
    {}, dict(progressive=True), dict(optimize=True),
    dict(restart_marker_blocks=2), dict(subsampling=0, quality=98)])
def test_valid_jpegs_load(tmp_path, options):
    path = tmp_path / 'ok.jpg'
    path.write_bytes(jpeg_bytes(**options))
    assert load_image(path).size == (128, 128)


def test_jpeg_with_exif_data_loads(tmp_path):
    exif = Image.Exif()
    exif[0x010E] = 'a description'
    path = save(tmp_path, 'exif.jpg', Image.fromarray(scene()),
                exif=exif.tobytes())
    assert load_image(path).size == (64, 64)


def corrupt(data, offset, replacement):
    """``data`` with ``replacement`` written at ``offset`` into the first
    scan's entropy-coded data."""
    sos = data.find(b'\xff\xda')
    start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], 'big') + offset
    return data[:start] + replacement + data[start + len(replacement):]


@pytest.mark.parametrize('kind, data, pil_tells, reason', [
    # Markers that a scan cannot hold: libjpeg resyncs over them with a
    # warning PIL discards, and decodes garbage.
    ('stray restart marker', lambda: corrupt(jpeg_bytes(), 300, b'\xff\xd5'),
     False, r'restart marker RST5 at byte \d+ where RST0 belongs'),
    ('restart markers out of order', lambda: jpeg_bytes(
        restart_marker_blocks=2).replace(b'\xff\xd3', b'\xff\xd5', 1),
     False, r'restart marker RST5 at byte \d+ where RST3 belongs'),
    ('scan cut by a segment',
     lambda: corrupt(jpeg_bytes(), 300, b'\xff\xe3\x00\x04ab'), False,
     r'data at byte \d+ where a marker belongs, after a scan'),
    # PIL tells ("broken data stream"); the report says where and why.
    ('foreign marker', lambda: corrupt(jpeg_bytes(), 300, b'\xff\x4a'),
     True, r'marker 0x4A at byte \d+ inside the entropy-coded data'),
])
def test_corrupt_jpeg_body_is_reported_naming_the_file(
        tmp_path, kind, data, pil_tells, reason):
    data = data()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        told = False
    except OSError:
        told = True
    assert told == pil_tells
    path = tmp_path / 'corrupt.jpg'
    path.write_bytes(data)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert re.fullmatch(f"cannot load image '{re.escape(str(path))}': "
                        f'corrupt JPEG data: {reason}', str(info.value))


def test_jpeg_cut_short_is_reported(tmp_path):
    path = tmp_path / 'cut.jpg'
    path.write_bytes(jpeg_bytes()[:-200])
    with pytest.raises(ImageLoadError, match='truncated'):
        load_image(path)


def test_a_flipped_bit_in_jpeg_data_is_not_detectable(tmp_path):
    """The limit docs/reliability.md states: the structure stays valid."""
    data = jpeg_bytes()
    path = tmp_path / 'flipped.jpg'
    path.write_bytes(corrupt(data, 300, bytes([data[
        data.find(b'\xff\xda') + 320] ^ 0x10])))
    assert load_image(path).size == (128, 128)


def test_png_with_a_bad_chunk_checksum_is_reported(tmp_path):
    data = bytearray(save(tmp_path, 'ok.png',
                          Image.fromarray(scene())).read_bytes())
    data[data.find(b'IDAT') + 100] ^= 0x01
    path = tmp_path / 'crc.png'
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        load_image(path)


def test_empty_file_is_reported(tmp_path):
    path = tmp_path / 'empty.png'
    path.write_bytes(b'')
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        load_image(path)


def test_every_image_file_is_read_by_the_one_loader():
    """Training sources, hooks, evaluation and tools: no other Image.open."""
    readers = [str(p.relative_to(REPO))
               for folder in ('reca_toolkit', 'tools', 'projects')
               for p in (REPO / folder).rglob('*.py')
               if 'Image.open(' in p.read_text()]
    assert readers == ['reca_toolkit/datasets/transforms/loading.py']


# --------------------------------------------------------------------------
# The sample-grid hook under the training data's skip policy
# --------------------------------------------------------------------------
def folder_with_bad_first_image(image_folder):
    bad = image_folder / '0_bad.png'          # sorts first
    bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
    return bad


def grid_runner(image_folder, skip_bad_images):
    dataset = MultiSourceDataset(dict(recon=dict(
        type='ImageFolder', root=str(image_folder),
        pipeline=[dict(type='LoadImage'),
                  dict(type='ImageViews', und_size=32, gen_size=32)])),
        skip_bad_images=skip_bad_images)
    return SimpleNamespace(train_dataloader=SimpleNamespace(dataset=dataset))


def test_sample_grid_hook_skips_a_bad_image_when_training_does(
        image_folder):
    """The issue's crash before iteration 1: the hook loaded its images
    directly, bypassing skip_bad_images=True."""
    folder_with_bad_first_image(image_folder)
    hook = SampleGridHook(num_images=4)
    hook.before_train(grid_runner(image_folder, skip_bad_images=True))
    assert hook.images['gen_pixels'].shape == (4, 3, 32, 32)
    files = grid_runner(image_folder, True).train_dataloader.dataset.sources[
        'recon'].files
    expected = [load_image(p).resize((32, 32)) for p in files[1:5]]
    assert hook.images['gen_pixels'].float().mean() == pytest.approx(
        np.mean([np.asarray(e, float) for e in expected]), abs=3)


def test_sample_grid_hook_stops_on_a_bad_image_when_training_does(
        image_folder):
    bad = folder_with_bad_first_image(image_folder)
    with pytest.raises(ImageLoadError, match=re.escape(str(bad))):
        SampleGridHook(num_images=4).before_train(
            grid_runner(image_folder, skip_bad_images=False))


# --------------------------------------------------------------------------
# Captioned grids
# --------------------------------------------------------------------------
def strips(grid, rows, tile=32, pad=2, ncols=2):
    """The caption strip under each tile of a ``make_grid`` grid."""
    height = (grid.shape[0] - pad) // rows - pad
    return [grid[pad + r * (height + pad) + tile:
                 pad + r * (height + pad) + height,
                 pad + c * (tile + pad):pad + c * (tile + pad) + tile]
            for r in range(rows) for c in range(ncols)]


class Recorder(SimpleNamespace):
    def add_image(self, name, image, step):
        self.images[name] = image


def test_sample_grid_tiles_carry_their_captions(image_folder):
    hook = SampleGridHook(num_images=2, prompts=['a red circle', 'a cat'])
    runner = grid_runner(image_folder, skip_bad_images=False)
    hook.before_train(runner)
    model = SimpleNamespace(
        parameters=lambda: iter([torch.zeros(1)]), training=True,
        eval=lambda: None, train=lambda mode: None,
        reconstruct=lambda x, seed, **k: torch.zeros_like(x),
        generate=lambda prompts, seed, **k: torch.zeros(len(prompts), 3, 32,
                                                        32))
    runner.model, runner.visualizer = model, Recorder(images={})
    runner.optim_wrapper = SimpleNamespace()
    hook.log_grids(runner, step=1)
    recon = runner.visualizer.images['reconstruction']
    prompts = runner.visualizer.images['prompts']
    for grid, rows in ((recon, 2), (prompts, 1)):
        captions = strips(grid, rows)
        assert all((strip != 255).any() for strip in captions)
    top, _, bottom, _ = strips(recon, 2)
    assert not np.array_equal(top, bottom)        # 'input', 'reconstruction'
    assert not np.array_equal(*strips(prompts, 1))


def test_eval_grid_tiles_carry_their_prompts():
    hook = EvalSampleGridHook(num_images=2, ncols=2)
    hook._collect([dict(pred=torch.zeros(3, 32, 32), prompt='a red circle'),
                   dict(pred=torch.zeros(3, 32, 32), prompt='')])
    runner = SimpleNamespace(visualizer=Recorder(images={}),
                             logger=SimpleNamespace(info=lambda m: None))
    hook._log(runner, 'val_samples', 5)
    grid = runner.visualizer.images['val_samples']
    assert all((strip != 255).any() for strip in strips(grid, 1))


def test_make_grid_without_captions_is_unchanged():
    grid = make_grid(torch.zeros(2, 3, 8, 8), ncols=2)
    assert grid.shape == (12, 22, 3)


def test_make_grid_needs_a_caption_per_image():
    with pytest.raises(ValueError, match='1 captions for 2 images'):
        make_grid(torch.zeros(2, 3, 8, 8), ncols=2, captions=['x'])
