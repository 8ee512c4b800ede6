"""The patch-lookup generation tokenizer and the toy's captions."""
import random

import pytest
import torch

from conftest import build_tiny_model, tiny_model_cfg
from projects.janus_toy.janus_toy import GenEvalShapesScenes
from reca_toolkit.datasets.geneval_shapes import GenEvalShapesPrompts
from reca_toolkit.datasets.shapes import (ALL_PAIRS, HELD_OUT_PAIRS, PALETTE,
                                          ShapeObject, ShapeScene, caption,
                                          describe, random_scene, render)
from reca_toolkit.registry import ENCODERS


def as_pixels(arrays):
    images = torch.stack([torch.from_numpy(a.copy()) for a in arrays])
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture(scope='module')
def tokenizer():
    return ENCODERS.build(dict(type='PatchLookupTokenizer'))


def test_round_trip_is_exact_on_scenes(tokenizer):
    rng = random.Random(0)
    scenes = [render(random_scene(rng, pairs=ALL_PAIRS)) for _ in range(300)]
    suite = GenEvalShapesPrompts(num_prompts=120)
    scenes += [suite.ground_truth(i) for i in range(len(suite))]
    pixels = as_pixels(scenes)
    codes = tokenizer.encode(pixels)
    assert codes.shape == (420, 16) and codes.dtype == torch.long
    assert tokenizer.num_codes == 19 and tokenizer.num_tokens == 16
    decoded = tokenizer.decode(codes)
    assert torch.equal(((decoded + 1) * 127.5).round().to(torch.uint8),
                       ((pixels + 1) * 127.5).round().to(torch.uint8))


def test_codes_are_slot_contents(tokenizer):
    # Code 0 is an empty slot; a lone object's slot holds its pair's code.
    scene = ShapeScene((ShapeObject('triangle', 'red', 2, 1), ))
    codes = tokenizer.encode(as_pixels([render(scene)]))[0]
    assert codes[2 * 4 + 1] == 1 + ALL_PAIRS.index(('red', 'triangle'))
    assert (codes[torch.arange(16) != 9] == 0).all()


def test_any_code_grid_decodes(tokenizer):
    codes = torch.randint(0, tokenizer.num_codes, (3, 16))
    assert torch.equal(tokenizer.encode(tokenizer.decode(codes)), codes)


def test_wrong_image_size_names_the_size(tokenizer):
    with pytest.raises(ValueError, match='encodes 64 px images'):
        tokenizer.encode(torch.zeros(1, 3, 48, 48))


def test_janus_refuses_a_tokenizer_the_head_cannot_predict():
    assert tiny_model_cfg()['umm']['config']['vq_config'][
        'num_embeddings'] != 19
    with pytest.raises(ValueError, match='vq_config.num_embeddings=19'):
        build_tiny_model(gen_tokenizer=dict(type='PatchLookupTokenizer'))


def test_sparse_captions_drop_details_dense_descriptions_keep_them():
    scenes = GenEvalShapesScenes(num_scenes=400, include_held_out=True,
                                 sparse=dict(color_drop=0.5,
                                             relation_drop=0.7),
                                 unnamed_held_out=True)
    full = GenEvalShapesScenes(num_scenes=400, include_held_out=True)
    named = {f'{c} {s}' for c, s in HELD_OUT_PAIRS}
    sparse_colors = full_colors = 0
    for i in range(len(scenes)):
        sample, reference = scenes.raw(i), full.raw(i)
        assert (sample['img'] == reference['img']).all()
        # An image's caption is fixed, like a dataset's.
        assert scenes.raw(i)['caption'] == sample['caption']
        assert not any(p in sample['caption'] for p in named)
        for obj in scenes.scene(i).objects:
            assert f'{obj.color} {obj.shape}' in \
                sample['conversations'][0][1]
        sparse_colors += sum(sample['caption'].count(c) for c in PALETTE)
        full_colors += sum(reference['caption'].count(c) for c in PALETTE)
    assert 0.2 * full_colors < sparse_colors < 0.6 * full_colors


def test_caption_grammar_matches_geneval_prompts():
    left = ShapeScene((ShapeObject('circle', 'red', 1, 0),
                       ShapeObject('square', 'blue', 1, 3)))
    assert caption(left) == 'a photo of a red circle left of a blue square'
    two = ShapeScene((ShapeObject('square', 'green', 0, 0),
                      ShapeObject('square', 'green', 3, 3)))
    assert caption(two) == 'a photo of two green squares'
    sparse = caption(left, random.Random(0), color_drop=1.0,
                     relation_drop=1.0)
    assert sparse in ('a photo of a circle and a square',
                      'a photo of a square and a circle')
    assert describe(left) == ('a red circle at the middle left and a blue '
                              'square at the middle right')
