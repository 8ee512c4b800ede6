"""Data: sources, loading, views, the multi-source dataset and its samplers.

Everything runs on real files written to ``tmp_path``; samplers are checked
against the guarantees the module docstring of ``samplers.py`` makes (a
permutation per epoch, DDP exactness, O(1) resume).
"""
import json
import types
from itertools import islice

import numpy as np
import pytest
import torch
from PIL import Image

from reca_toolkit.datasets import (AspectViews, CaptionedImages, ImageFolder,
                                   ImageLoadError, ImageViews, LoadImage,
                                   MultiSourceBatchSampler, MultiSourceDataset,
                                   MultiSourceSampler, SampleKey, ShapeScenes,
                                   collate_by_source)
from reca_toolkit.datasets import samplers as samplers_module
from reca_toolkit.datasets.samplers import source_counts
from reca_toolkit.datasets.shapes import BACKGROUND, PALETTE, SHAPES

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, ) * 3


def write_image(path, color=RED, size=(8, 8), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, color).save(path, format=fmt)
    return path


def pixels(image):
    return np.asarray(image)


# --------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------
@pytest.fixture
def mixed_folder(tmp_path):
    """Images with every supported suffix in mixed case, nested, plus files
    and a folder that must be ignored."""
    root = tmp_path / 'mixed'
    write_image(root / 'b.png')
    write_image(root / 'A.JPG', fmt='JPEG')
    write_image(root / 'sub' / 'c.jpeg', fmt='JPEG')
    write_image(root / 'sub' / 'deep' / 'd.WebP', fmt='WEBP')
    write_image(root / 'e.gif', fmt='GIF')          # not a listed extension
    (root / 'notes.txt').write_text('not an image')
    (root / 'x.png.bak').write_text('not an image')
    (root / 'folder.png').mkdir()                   # a folder, not a file
    return root


def test_image_folder_finds_images_recursively_case_insensitive(mixed_folder):
    source = ImageFolder(mixed_folder)
    rel = [p.relative_to(mixed_folder).as_posix() for p in source.files]
    # Sorted by path; every suffix case-insensitively; nothing else.
    assert rel == ['A.JPG', 'b.png', 'sub/c.jpeg', 'sub/deep/d.WebP']
    assert len(source) == 4
    assert source.raw(2) == dict(img_path=str(mixed_folder / 'sub/c.jpeg'))


def test_image_folder_fixture_layout(image_folder):
    # The shared fixture: 6 images (png, jpg, webp, JPEG) and a .txt.
    source = ImageFolder(image_folder)
    assert len(source) == 6
    assert all(not p.name.endswith('.txt') for p in source.files)
    assert source.files == sorted(source.files)


def test_image_folder_non_recursive_takes_top_level_only(mixed_folder):
    source = ImageFolder(mixed_folder, recursive=False)
    assert [p.name for p in source.files] == ['A.JPG', 'b.png']


def test_image_folder_custom_extensions(mixed_folder):
    source = ImageFolder(mixed_folder, extensions=('.GIF', ))
    assert [p.name for p in source.files] == ['e.gif']


def test_image_folder_missing_folder_raises_naming_it(tmp_path):
    missing = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError, match='nowhere'):
        ImageFolder(missing)
    with pytest.raises(FileNotFoundError, match='nowhere'):
        ImageFolder.validate_config(dict(root=str(missing)))


def test_image_folder_empty_folder_raises_naming_it(tmp_path):
    empty = tmp_path / 'empty_dir'
    empty.mkdir()
    (empty / 'readme.txt').write_text('no images here')
    with pytest.raises(FileNotFoundError, match='empty_dir'):
        ImageFolder(empty)
    with pytest.raises(FileNotFoundError, match='empty_dir'):
        ImageFolder.validate_config(dict(root=str(empty)))


def test_image_folder_validate_config_follows_recursive_and_extensions(
        mixed_folder, tmp_path):
    ImageFolder.validate_config(dict(root=str(mixed_folder)))  # no error
    only_nested = tmp_path / 'only_nested'
    write_image(only_nested / 'sub' / 'a.png')
    ImageFolder.validate_config(dict(root=str(only_nested)))
    with pytest.raises(FileNotFoundError, match='only_nested'):
        ImageFolder.validate_config(dict(root=str(only_nested),
                                         recursive=False))
    with pytest.raises(FileNotFoundError):
        ImageFolder.validate_config(dict(root=str(only_nested),
                                         extensions=('.jpg', )))


# --------------------------------------------------------------------------
# LoadImage
# --------------------------------------------------------------------------
def load(path):
    return LoadImage()(dict(img_path=str(path)))['img']


def two_colour_jpeg(path, orientation):
    """40 x 20 (w x h): left half red, right half blue, EXIF orientation."""
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20], array[:, 20:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif, quality=95)
    return path


def assert_close(pixel, colour, tol=8):
    assert np.abs(np.asarray(pixel, int) - colour).max() <= tol, \
        (pixel, colour)


def test_load_image_applies_exif_orientation_6(tmp_path):
    # Orientation 6: rotate 90 degrees clockwise to display; the stored
    # left column (red) becomes the top row.
    image = load(two_colour_jpeg(tmp_path / 'o6.jpg', 6))
    assert image.mode == 'RGB'
    assert image.size == (20, 40)
    assert_close(pixels(image)[2, 10], RED)
    assert_close(pixels(image)[-3, 10], BLUE)


def test_load_image_applies_exif_orientation_8(tmp_path):
    # Orientation 8: rotate 90 degrees counter-clockwise; the stored right
    # column (blue) becomes the top row.
    image = load(two_colour_jpeg(tmp_path / 'o8.jpg', 8))
    assert image.size == (20, 40)
    assert_close(pixels(image)[2, 10], BLUE)
    assert_close(pixels(image)[-3, 10], RED)


def test_load_image_without_exif_keeps_layout(tmp_path):
    image = load(two_colour_jpeg(tmp_path / 'o1.jpg', 1))
    assert image.size == (40, 20)
    assert_close(pixels(image)[10, 2], RED)


def test_load_image_rgba_composited_on_white(tmp_path):
    array = np.zeros((4, 4, 4), np.uint8)
    array[0, 0] = (255, 0, 0, 255)      # opaque red
    array[0, 1] = (255, 0, 0, 0)        # fully transparent red -> white
    array[0, 2] = (0, 0, 0, 128)        # half-transparent black -> grey
    Image.fromarray(array, 'RGBA').save(tmp_path / 'rgba.png')
    image = load(tmp_path / 'rgba.png')
    assert image.mode == 'RGB'
    out = pixels(image)
    assert tuple(out[0, 0]) == RED
    assert tuple(out[0, 1]) == WHITE    # not black: composited, not dropped
    assert_close(out[0, 2], (127, 127, 127), tol=1)


def test_load_image_la_composited_on_white(tmp_path):
    array = np.zeros((2, 2, 2), np.uint8)
    array[0, 0] = (0, 255)              # opaque black
    array[0, 1] = (0, 0)                # transparent -> white
    Image.fromarray(array, 'LA').save(tmp_path / 'la.png')
    out = pixels(load(tmp_path / 'la.png'))
    assert out.shape == (2, 2, 3)
    assert tuple(out[0, 0]) == (0, 0, 0)
    assert tuple(out[0, 1]) == WHITE


def test_load_image_palette_with_transparency_composited_on_white(tmp_path):
    image = Image.new('P', (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.putpixel((0, 0), 0)           # index 0 (black), made transparent
    image.putpixel((1, 0), 1)           # index 1 (red)
    image.save(tmp_path / 'p.png', transparency=0)
    out = pixels(load(tmp_path / 'p.png'))
    assert tuple(out[0, 0]) == WHITE
    assert tuple(out[0, 1]) == RED


def test_load_image_grayscale_becomes_rgb(tmp_path):
    Image.new('L', (3, 2), 77).save(tmp_path / 'gray.png')
    image = load(tmp_path / 'gray.png')
    assert image.mode == 'RGB'
    assert pixels(image).shape == (2, 3, 3)
    assert (pixels(image) == 77).all()


def test_load_image_in_memory_array(tmp_path):
    array = np.full((5, 6, 3), 9, np.uint8)
    image = LoadImage()(dict(img=array))['img']
    assert isinstance(image, Image.Image) and image.mode == 'RGB'
    assert image.size == (6, 5)


def noise_image(path, fmt):
    array = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(array).save(path, format=fmt)
    return path


@pytest.mark.parametrize('fmt,suffix', [('PNG', 'png'), ('JPEG', 'jpg')])
def test_load_image_truncated_file_raises_naming_it(tmp_path, fmt, suffix):
    path = noise_image(tmp_path / f'cut.{suffix}', fmt)
    load(path)                          # the full file loads
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ImageLoadError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


def test_load_image_corrupt_file_raises_naming_it(tmp_path):
    path = tmp_path / 'corrupt.jpg'
    path.write_bytes(np.random.default_rng(1).bytes(512))
    with pytest.raises(ImageLoadError, match='corrupt.jpg') as info:
        load(path)
    assert str(path) in str(info.value)


def test_load_image_missing_file_raises_naming_it(tmp_path):
    path = tmp_path / 'missing.png'
    with pytest.raises(ImageLoadError) as info:
        load(path)
    assert str(path) in str(info.value)
    # An OSError, so code that catches I/O failures also catches it.
    assert isinstance(info.value, OSError)


# --------------------------------------------------------------------------
# ImageViews
# --------------------------------------------------------------------------
def banded_image():
    """32 x 16 (w x h), 2:1: red | green (the central square) | blue."""
    array = np.zeros((16, 32, 3), np.uint8)
    array[:, :8], array[:, 8:24], array[:, 24:] = RED, GREEN, BLUE
    return Image.fromarray(array)


def views(image, **kwargs):
    return ImageViews(**kwargs)(dict(img=image))


def test_image_views_keys_shapes_and_dtype():
    out = views(banded_image(), und_size=8, gen_size=24)
    assert 'img' not in out
    assert out['und_pixels'].shape == (3, 8, 8)
    assert out['gen_pixels'].shape == (3, 24, 24)
    assert out['und_pixels'].dtype == out['gen_pixels'].dtype == torch.uint8


def test_image_views_single_view():
    assert set(views(banded_image(), und_size=8)) == {'und_pixels'}
    assert set(views(banded_image(), gen_size=8)) == {'gen_pixels'}
    with pytest.raises(ValueError, match='und_size'):
        ImageViews()


def test_image_views_center_crop_keeps_the_centre():
    # The central 16 x 16 square of the banded image is all green; the
    # size is unchanged so the crop is exact.
    out = views(banded_image(), und_size=16, mode='center_crop')['und_pixels']
    assert (out.permute(1, 2, 0) == torch.tensor(GREEN, dtype=torch.uint8)
            ).all()


def test_image_views_pad_letterboxes_with_grey():
    # 32 x 16 padded to 32 x 32: 8 grey rows above and below, the image
    # unchanged in between (size 32: no resampling, exact values).
    out = views(banded_image(), gen_size=32, mode='pad')['gen_pixels']
    hwc = out.permute(1, 2, 0)
    assert (hwc[:8] == 127).all() and (hwc[24:] == 127).all()
    assert torch.equal(hwc[8:24], torch.from_numpy(np.array(banded_image())))


def test_image_views_pad_resized_keeps_bars():
    out = views(banded_image(), und_size=16, mode='pad')['und_pixels']
    hwc = out.permute(1, 2, 0)
    # The first and last rows are far from the image: pure grey bars.
    assert (hwc[0] == 127).all() and (hwc[-1] == 127).all()
    assert_close(hwc[8, 8].numpy(), GREEN, tol=20)


def test_image_views_stretch_keeps_everything():
    # Stretching squeezes all three bands into the square: red on the left,
    # blue on the right, no grey.
    out = views(banded_image(), und_size=16, mode='stretch')['und_pixels']
    hwc = out.permute(1, 2, 0).numpy()
    assert_close(hwc[8, 0], RED, tol=30)
    assert_close(hwc[8, 8], GREEN, tol=30)
    assert_close(hwc[8, 15], BLUE, tol=30)


def test_image_views_modes_differ():
    crop, pad, stretch = (views(banded_image(), und_size=16, mode=m)
                          ['und_pixels'] for m in ('center_crop', 'pad',
                                                   'stretch'))
    assert not torch.equal(crop, pad)
    assert not torch.equal(crop, stretch)
    assert not torch.equal(pad, stretch)


def test_image_views_invalid_mode_names_valid_modes():
    with pytest.raises(ValueError) as info:
        ImageViews(und_size=8, mode='letterbox')
    for name in ('letterbox', 'center_crop', 'pad', 'stretch'):
        assert name in str(info.value)


@pytest.mark.parametrize('size, bounds, expected', [
    # 1600 x 1200, VAE bounds: the long side to 1024 (scale 0.64).
    ((1600, 1200), (1024, 512, 16), (1024, 768)),
    # The ViT's: 980 x 735, the short side rounded to 52 patches (52.5
    # rounds to even, as upstream's Python round).
    ((1600, 1200), (980, 378, 14), (980, 728)),
    # Small: enlarged until the short side is 512 (2.56), never the long.
    ((300, 200), (1024, 512, 16), (768, 512)),
    # 8:1: the short side's minimum gives 4096 x 512; above 14*14*9*1024
    # pixels it shrinks by the area ratio (0.861: 3520 x 448), then the
    # long side back to 1024 (1024 x 130.3 -> 128).
    ((4000, 500), (1024, 512, 16), (1024, 128)),
])
def test_aspect_size_is_bagels_resize_by_hand(size, bounds, expected):
    from reca_toolkit.datasets.transforms.views import aspect_size
    assert aspect_size(*size, *bounds) == expected


def test_aspect_views_keep_the_shape_and_collate_as_a_list():
    from reca_toolkit.models.data_preprocessor import RecADataPreprocessor
    transform = AspectViews(und=(32, 8, 4), gen=(64, 32, 8))
    wide = transform(dict(img=banded_image()))  # 32 x 16: kept; doubled
    assert wide['und_pixels'].shape == (3, 16, 32)
    assert wide['gen_pixels'].shape == (3, 32, 64)
    tall = transform(dict(img=banded_image().transpose(Image.ROTATE_90)))
    assert tall['gen_pixels'].shape == (3, 64, 32)
    batch = collate_by_source([dict(wide, source='edit'),
                               dict(tall, source='edit')])
    pixels = batch['inputs']['edit']['gen_pixels']
    assert isinstance(pixels, list) and [p.shape[1:] for p in pixels] == [
        (32, 64), (64, 32)]
    data = RecADataPreprocessor()(batch)['inputs']['edit']['gen_pixels']
    assert all(p.dtype == torch.float32 and p.min() >= -1 for p in data)
    batch = collate_by_source([dict(wide, source='edit'),
                               dict(tall, source='edit')])
    with pytest.raises(ValueError, match="und_pixels of source 'edit' "
                       r'differ in shape .*one size per source'):
        RecADataPreprocessor()(batch, training=True)
    with pytest.raises(ValueError, match='max_size, min_size, stride'):
        AspectViews(und=(32, 8))


# --------------------------------------------------------------------------
# CaptionedImages
# --------------------------------------------------------------------------
def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text('\n'.join(lines) + '\n')
    return path


def test_captioned_jsonl_captions(tmp_path):
    write_image(tmp_path / 'imgs' / 'a.png')
    ann = write_jsonl(tmp_path / 'ann.jsonl', [
        dict(image='imgs/a.png', caption='a red square'),
        dict(image='imgs/b.png', caption=42)])
    source = CaptionedImages(ann, caption_question='What is it?')
    assert len(source) == 2
    # data_root defaults to the annotation file's folder.
    assert source.raw(0) == dict(
        img_path=str(tmp_path / 'imgs' / 'a.png'), caption='a red square',
        conversations=[('What is it?', 'a red square')])
    assert source.raw(1)['caption'] == '42'  # captions become strings


def test_captioned_raw_is_a_copy(tmp_path):
    ann = write_jsonl(tmp_path / 'ann.jsonl',
                      [dict(image='a.png', caption='c')])
    source = CaptionedImages(ann)
    source.raw(0)['caption'] = 'changed'
    assert source.raw(0)['caption'] == 'c'


def test_captioned_data_root_override(tmp_path):
    ann = write_jsonl(tmp_path / 'ann.jsonl',
                      [dict(image='a.png', caption='c')])
    source = CaptionedImages(ann, data_root=tmp_path / 'elsewhere')
    assert source.raw(0)['img_path'] == str(tmp_path / 'elsewhere' / 'a.png')


def test_captioned_llava_json_conversations(tmp_path):
    ann = tmp_path / 'llava.json'
    ann.write_text(json.dumps([
        dict(id='1', image='x.jpg', conversations=[
            {'from': 'human', 'value': '<image>\nWhat colour is it?'},
            {'from': 'gpt', 'value': 'Red. '},
            {'from': 'human', 'value': 'And its shape?'},
            {'from': 'gpt', 'value': 'A square.'}]),
        dict(image='y.jpg', conversations=[
            {'role': 'user', 'content': 'Describe. <image>'},
            {'role': 'assistant', 'content': 'A cat.'}]),
    ]))
    source = CaptionedImages(ann)
    first = source.raw(0)
    assert first == dict(img_path=str(tmp_path / 'x.jpg'), conversations=[
        ('What colour is it?', 'Red.'), ('And its shape?', 'A square.')])
    assert 'caption' not in first
    assert source.raw(1)['conversations'] == [('Describe.', 'A cat.')]


def test_captioned_malformed_json_line_names_file_and_line(tmp_path):
    # Line 2 is blank (skipped) but still counted: the bad line is line 3.
    ann = tmp_path / 'bad.jsonl'
    ann.write_text(json.dumps(dict(image='a.png', caption='c')) +
                   '\n\n{"image": "b.png", caption\n')
    with pytest.raises(ValueError, match=f'{ann}:3'):
        CaptionedImages(ann)


def test_captioned_record_without_image_names_location(tmp_path):
    ann = write_jsonl(tmp_path / 'ann.jsonl', [
        dict(image='a.png', caption='c'), dict(caption='no image')])
    with pytest.raises(ValueError, match=f"{ann}:2.*'image'"):
        CaptionedImages(ann)


def test_captioned_record_without_caption_names_location(tmp_path):
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps([dict(image='a.png', caption='c'),
                               dict(image='b.png', text='wrong key')]))
    with pytest.raises(ValueError) as info:
        CaptionedImages(ann)
    assert f'{ann}[1]' in str(info.value)
    assert 'caption' in str(info.value)


def test_captioned_roles_out_of_order_raise(tmp_path):
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps([dict(image='a.png', conversations=[
        {'from': 'human', 'value': 'q1'}, {'from': 'gpt', 'value': 'a1'},
        {'from': 'gpt', 'value': 'a2'}, {'from': 'human', 'value': 'q2'}])]))
    with pytest.raises(ValueError, match=r'ann.json\[0\].*turn 1'):
        CaptionedImages(ann)


def test_captioned_missing_annotation_file(tmp_path):
    missing = tmp_path / 'none.jsonl'
    with pytest.raises(FileNotFoundError, match='none.jsonl'):
        CaptionedImages(missing)
    with pytest.raises(FileNotFoundError, match='none.jsonl'):
        CaptionedImages.validate_config(dict(ann_file=str(missing)))


def test_captioned_json_must_be_a_list(tmp_path):
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(image='a.png', caption='c')))
    with pytest.raises(ValueError, match='list'):
        CaptionedImages(ann)


# --------------------------------------------------------------------------
# MultiSourceDataset + collate_by_source
# --------------------------------------------------------------------------
VIEWS = [dict(type='LoadImage'), dict(type='ImageViews', und_size=16,
                                      gen_size=32)]


def test_multi_source_collate_batches_each_source(image_folder, tmp_path):
    write_image(tmp_path / 'cap' / 'a.png', GREEN)
    ann = write_jsonl(tmp_path / 'cap' / 'ann.jsonl',
                      [dict(image='a.png', caption='green')])
    dataset = MultiSourceDataset(dict(
        recon=dict(type='ImageFolder', root=str(image_folder),
                   pipeline=VIEWS),
        i2t=dict(type='CaptionedImages', ann_file=str(ann),
                 pipeline=[dict(type='LoadImage'),
                            dict(type='ImageViews', und_size=16)]),
        shapes=dict(type='ShapeScenes', num_scenes=5, pipeline=VIEWS)))
    assert len(dataset) == 6 + 1 + 5
    assert dataset.metainfo == dict(sources=dict(recon=6, i2t=1, shapes=5))
    keys = [SampleKey('recon', 0, 10), SampleKey('i2t', 0, 3),
            SampleKey('recon', 4, 11), SampleKey('shapes', 2, 7)]
    batch = collate_by_source([dataset[k] for k in keys])

    assert set(batch['inputs']) == {'recon', 'i2t', 'shapes'}
    recon = batch['inputs']['recon']
    assert recon['und_pixels'].shape == (2, 3, 16, 16)
    assert recon['gen_pixels'].shape == (2, 3, 32, 32)
    assert recon['und_pixels'].dtype == torch.uint8
    assert recon['draw'].dtype == torch.long
    assert recon['draw'].tolist() == [10, 11]
    assert recon['img_path'] == [str(ImageFolder(image_folder).files[i])
                                 for i in (0, 4)]

    i2t = batch['inputs']['i2t']
    assert set(i2t) == {'img_path', 'caption', 'conversations', 'draw',
                        'und_pixels'}
    assert i2t['caption'] == ['green']
    assert i2t['conversations'] == [[('Describe this image in detail.',
                                      'green')]]
    assert (i2t['und_pixels'][0].permute(1, 2, 0) ==
            torch.tensor(GREEN, dtype=torch.uint8)).all()

    shapes = batch['inputs']['shapes']
    assert isinstance(shapes['caption'], list) and len(shapes['caption']) == 1
    assert shapes['caption'][0] == ShapeScenes(num_scenes=5).raw(2)['caption']
    assert batch['data_samples'] == dict(skipped=0)


@pytest.fixture
def folder_with_bad_image(tmp_path):
    root = tmp_path / 'bad_folder'
    write_image(root / 'a.png', RED)
    (root / 'b.png').write_bytes(b'definitely not a png' * 10)
    write_image(root / 'c.png', BLUE)
    return root


def test_multi_source_bad_image_stops_naming_file(folder_with_bad_image):
    dataset = MultiSourceDataset(dict(recon=dict(
        type='ImageFolder', root=str(folder_with_bad_image),
        pipeline=VIEWS)))
    dataset[SampleKey('recon', 0, 0)]    # a good one loads
    with pytest.raises(ImageLoadError) as info:
        dataset[SampleKey('recon', 1, 1)]
    assert str(folder_with_bad_image / 'b.png') in str(info.value)


def test_multi_source_skip_bad_images_takes_next_and_counts(
        folder_with_bad_image):
    dataset = MultiSourceDataset(dict(recon=dict(
        type='ImageFolder', root=str(folder_with_bad_image),
        pipeline=VIEWS)), skip_bad_images=True)
    for _ in range(2):  # deterministic: the same replacement every time
        sample = dataset[SampleKey('recon', 1, 5)]
        assert sample['img_path'] == str(folder_with_bad_image / 'c.png')
        assert sample['skipped'] == 1
        assert sample['draw'] == 5      # the draw of the requested key
        assert (sample['gen_pixels'].permute(1, 2, 0) ==
                torch.tensor(BLUE, dtype=torch.uint8)).all()
    batch = collate_by_source([dataset[SampleKey('recon', i, i)]
                               for i in range(3)])
    assert batch['data_samples']['skipped'] == 1
    assert batch['inputs']['recon']['img_path'] == [
        str(folder_with_bad_image / n) for n in ('a.png', 'c.png', 'c.png')]


def test_multi_source_skip_wraps_around(folder_with_bad_image):
    # The last image is bad: its replacement wraps to the first.
    (folder_with_bad_image / 'c.png').write_bytes(b'broken')
    dataset = MultiSourceDataset(dict(recon=dict(
        type='ImageFolder', root=str(folder_with_bad_image),
        pipeline=VIEWS)), skip_bad_images=True)
    sample = dataset[SampleKey('recon', 2, 0)]
    assert sample['img_path'] == str(folder_with_bad_image / 'a.png')
    assert sample['skipped'] == 1
    sample = dataset[SampleKey('recon', 1, 0)]  # b and c bad -> a
    assert sample['skipped'] == 2


def test_multi_source_all_bad_images_stop(tmp_path):
    root = tmp_path / 'all_bad'
    root.mkdir()
    for name in ('a.png', 'b.png'):
        (root / name).write_bytes(b'broken')
    dataset = MultiSourceDataset(dict(recon=dict(
        type='ImageFolder', root=str(root), pipeline=VIEWS)),
        skip_bad_images=True)
    with pytest.raises(RuntimeError, match='recon'):
        dataset[SampleKey('recon', 0, 0)]


def test_multi_source_needs_a_source():
    with pytest.raises(ValueError):
        MultiSourceDataset({})


# --------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------
def fake_dataset(**sizes):
    """The samplers only read ``len`` of each source."""
    return types.SimpleNamespace(
        sources={name: range(size) for name, size in sizes.items()})


def by_source(keys):
    grouped = {}
    for key in keys:
        grouped.setdefault(key.source, []).append(key)
    return grouped


def test_source_counts_largest_remainder():
    assert source_counts(dict(a=1, b=1), 8) == dict(a=4, b=4)
    # 4 * 1/3 = 1.33, 4 * 2/3 = 2.67: the larger remainder gets the extra.
    assert source_counts(dict(a=1, b=2), 4) == dict(a=1, b=3)
    assert source_counts(dict(a=2, b=1), 4) == dict(a=3, b=1)
    # Ties resolve stably in insertion order.
    assert source_counts(dict(a=1, b=1, c=1), 4) == dict(a=2, b=1, c=1)
    assert source_counts(dict(a=1, b=1, c=1), 5) == dict(a=2, b=2, c=1)
    for ratios, size in [(dict(a=3, b=5, c=7), 11), (dict(a=0.3, b=0.7), 9)]:
        assert sum(source_counts(ratios, size).values()) == size


def test_source_counts_zero_share_raises():
    with pytest.raises(ValueError) as info:
        source_counts(dict(recon=1, i2t=100), 4)
    message = str(info.value)
    assert 'recon' in message and 'batch_size=4' in message
    # A source with ratio 0 is meant to get nothing: no error.
    assert source_counts(dict(a=0, b=1), 2) == dict(a=0, b=2)


def test_sampler_unknown_source_in_ratios_raises():
    with pytest.raises(ValueError) as info:
        MultiSourceSampler(fake_dataset(recon=4), ratios=dict(recon=1, i2tt=1),
                           seed=0)
    assert 'i2tt' in str(info.value) and 'recon' in str(info.value)


def test_batch_sampler_needs_multi_source_sampler():
    with pytest.raises(TypeError, match='MultiSourceSampler'):
        MultiSourceBatchSampler(range(3), batch_size=2)


def test_batch_sampler_per_source_counts():
    sampler = MultiSourceSampler(fake_dataset(recon=10, i2t=7),
                                 ratios=dict(recon=1, i2t=2), seed=0)
    batch_sampler = MultiSourceBatchSampler(sampler, batch_size=6)
    for batch in islice(batch_sampler, 5):
        assert len(batch) == 6
        assert [k.source for k in batch] == ['recon'] * 2 + ['i2t'] * 4
        assert all(isinstance(k, SampleKey) for k in batch)


def test_zero_ratio_source_is_never_drawn():
    sampler = MultiSourceSampler(fake_dataset(recon=10, i2t=7),
                                 ratios=dict(recon=1, i2t=0), seed=0)
    batches = list(islice(MultiSourceBatchSampler(sampler, batch_size=3), 4))
    assert {k.source for b in batches for k in b} == {'recon'}


@pytest.mark.parametrize('shuffle', [True, False])
def test_stream_is_a_permutation_per_epoch(shuffle):
    # count 3 per batch and sizes 10 / 7: epochs end inside batches.
    sizes = dict(recon=10, i2t=7)
    sampler = MultiSourceSampler(fake_dataset(**sizes), seed=3,
                                 shuffle=shuffle)
    batches = list(islice(MultiSourceBatchSampler(sampler, batch_size=6), 14))
    streams = by_source(k for b in batches for k in b)
    for source, size in sizes.items():
        keys = streams[source]
        assert [k.draw for k in keys] == list(range(len(keys)))
        epochs = [[k.index for k in keys[e * size:(e + 1) * size]]
                  for e in range(len(keys) // size)]
        assert len(epochs) >= 4
        for epoch in epochs:
            assert sorted(epoch) == list(range(size))
        if shuffle:
            # Reshuffled every epoch (10! and 7! orders: a repeat of all
            # four epochs by chance is impossible in practice).
            assert len({tuple(e) for e in epochs}) > 1
            assert epochs[0] != list(range(size))
        else:
            assert all(e == list(range(size)) for e in epochs)


def sampler_at(rank, world_size, monkeypatch, **kwargs):
    """A sampler built as rank ``rank`` of ``world_size`` would build it."""
    monkeypatch.setattr(samplers_module, 'get_dist_info',
                        lambda: (rank, world_size))
    return MultiSourceSampler(**kwargs)


@pytest.mark.parametrize('ratios,batch_size', [
    (dict(recon=1, i2t=1), 4), (dict(recon=1, i2t=2), 3),
    (dict(recon=3, i2t=1), 4)])
def test_ddp_ranks_split_the_single_process_batch(monkeypatch, ratios,
                                                  batch_size):
    """Two ranks with batch B see, together, exactly the keys (indices and
    draws) one process with batch 2B sees, rank 0's before rank 1's."""
    kwargs = dict(dataset=fake_dataset(recon=9, i2t=5), ratios=ratios,
                  seed=11)
    single = MultiSourceBatchSampler(
        sampler_at(0, 1, monkeypatch, **kwargs), 2 * batch_size)
    ranks = [MultiSourceBatchSampler(sampler_at(r, 2, monkeypatch, **kwargs),
                                     batch_size) for r in range(2)]
    assert [s.sampler.rank for s in ranks] == [0, 1]
    steps = 12  # several epochs of both sources
    for whole, part0, part1 in zip(islice(single, steps),
                                   islice(ranks[0], steps),
                                   islice(ranks[1], steps)):
        assert len(part0) == len(part1) == batch_size
        whole, part0, part1 = by_source(whole), by_source(part0), by_source(
            part1)
        assert set(whole) == set(ratios)
        for source in ratios:
            assert whole[source] == part0[source] + part1[source]


def test_ddp_ranks_by_setting_rank_attributes():
    # The same guarantee when rank / world size are set after construction.
    dataset = fake_dataset(recon=6, i2t=4)
    single = MultiSourceBatchSampler(
        MultiSourceSampler(dataset, seed=5), 8)
    ranks = []
    for rank in range(2):
        sampler = MultiSourceSampler(dataset, seed=5)
        sampler.rank, sampler.world_size = rank, 2
        ranks.append(MultiSourceBatchSampler(sampler, 4))
    for whole, part0, part1 in zip(islice(single, 6), islice(ranks[0], 6),
                                   islice(ranks[1], 6)):
        for source in ('recon', 'i2t'):
            assert by_source(whole)[source] == (by_source(part0)[source] +
                                                by_source(part1)[source])
    # Ranks never share a key in a step.
    step0 = [set(next(iter(r))) for r in ranks]
    assert not step0[0] & step0[1]


@pytest.mark.parametrize('start', [1, 4, 9])
def test_set_start_iter_resumes_exactly(start):
    def make():
        sampler = MultiSourceSampler(fake_dataset(recon=7, i2t=5),
                                     ratios=dict(recon=2, i2t=1), seed=2)
        return MultiSourceBatchSampler(sampler, batch_size=3)

    uninterrupted = list(islice(make(), start + 6))
    resumed = make()
    resumed.set_start_iter(start)
    assert list(islice(resumed, 6)) == uninterrupted[start:]
    # And the resumed stream does not start at the beginning.
    assert list(islice(resumed, 1))[0] != uninterrupted[0]


def test_seed_reproducibility():
    def stream(seed):
        sampler = MultiSourceSampler(fake_dataset(recon=20, i2t=20),
                                     seed=seed)
        return list(islice(MultiSourceBatchSampler(sampler, 4), 10))

    assert stream(7) == stream(7)
    assert stream(7) != stream(8)


def test_multi_source_sampler_iter_one_key_per_source_per_step():
    sampler = MultiSourceSampler(fake_dataset(recon=3, i2t=2), seed=0)
    keys = list(islice(sampler, 8))
    assert [k.source for k in keys] == ['recon', 'i2t'] * 4
    assert [k.draw for k in keys] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(sampler) == 5


def test_batch_sampler_len_scales_with_world_size():
    sampler = MultiSourceSampler(fake_dataset(recon=40, i2t=24), seed=0)
    assert len(MultiSourceBatchSampler(sampler, 8)) == 8
    sampler.world_size = 2
    assert len(MultiSourceBatchSampler(sampler, 8)) == 4


# --------------------------------------------------------------------------
# ShapeScenes
# --------------------------------------------------------------------------
def test_shape_scenes_deterministic_per_seed_and_index():
    a, b = ShapeScenes(num_scenes=20, seed=0), ShapeScenes(num_scenes=20,
                                                           seed=0)
    for i in (0, 7, 19):
        ra, rb = a.raw(i), b.raw(i)
        assert ra['caption'] == rb['caption']
        assert np.array_equal(ra['img'], rb['img'])
    # A different seed, or a different index, gives different scenes.
    other = ShapeScenes(num_scenes=20, seed=1)
    assert [a.scene(i) for i in range(20)] != [other.scene(i)
                                               for i in range(20)]
    assert len({a.scene(i) for i in range(20)}) > 15


def test_shape_scenes_caption_names_every_object():
    source = ShapeScenes(num_scenes=40, seed=3, question='Q?')
    object_counts = set()
    for i in range(len(source)):
        scene, raw = source.scene(i), source.raw(i)
        caption = raw['caption']
        object_counts.add(len(scene.objects))
        assert caption.count(' at the ') == len(scene.objects)
        for obj in scene.objects:
            assert obj.color in PALETTE and obj.shape in SHAPES
            assert f'{obj.color} {obj.shape}' in caption
        assert raw['conversations'] == [('Q?', caption)]
    assert object_counts == {1, 2, 3, 4}  # the range max_objects=4 allows


def test_shape_scenes_render_exact_colours():
    source = ShapeScenes(num_scenes=30, seed=0)
    slot = 64 // 4
    for i in range(len(source)):
        image, scene = source.raw(i)['img'], source.scene(i)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        # No antialiasing: only the background and the objects' colours.
        colours = {tuple(int(v) for v in c) for c in image.reshape(-1, 3)}
        assert colours == {BACKGROUND} | {PALETTE[o.color]
                                          for o in scene.objects}
        occupied = {(o.row, o.col) for o in scene.objects}
        for obj in scene.objects:
            # The slot centre lies inside every shape.
            centre = image[obj.row * slot + slot // 2,
                           obj.col * slot + slot // 2]
            assert tuple(centre) == PALETTE[obj.color]
        for row in range(4):
            for col in range(4):
                if (row, col) not in occupied:
                    cell = image[row * slot:(row + 1) * slot,
                                 col * slot:(col + 1) * slot]
                    assert (cell == BACKGROUND).all()


def test_shape_scenes_through_pipeline():
    source = ShapeScenes(num_scenes=4, pipeline=VIEWS)
    sample = source.prepare(1, draw=17)
    assert sample['draw'] == 17
    assert sample['gen_pixels'].shape == (3, 32, 32)
    assert torch.equal(sample['gen_pixels'].permute(1, 2, 0),
                       torch.from_numpy(np.array(Image.fromarray(
                           source.raw(1)['img']).resize(
                               (32, 32), Image.BICUBIC))))
    assert source[1]['draw'] == 1  # __getitem__ uses the index as draw

