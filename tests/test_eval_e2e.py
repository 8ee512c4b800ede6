"""An evaluation of the tiny pretrained Janus end to end: prompts ->
RecAModel.predict -> GenEval-Shapes in the official layout -> an evaluation
card, and the card re-run. The model draws some prompts right and some
wrong, so equal metrics say something."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, random_images, to_float
from reca_toolkit.engine import test as run_test
from reca_toolkit.engine.inference import load_model
from reca_toolkit.evaluation.card import load_card
from reca_toolkit.evaluation.pixels import images_of

CONFIG = str(REPO / 'configs/eval/geneval_shapes_janus_toy.py')
TAGS = ('single_object', 'two_object', 'counting', 'colors', 'position',
        'color_attr')
OPTIONS = {'model.umm.pretrained': str(REPO / 'projects/janus_toy/pretrained'),
           'test_dataloader.dataset.num_prompts': 12,
           'test_dataloader.dataset.num_images': 2,
           'test_dataloader.batch_size': 4}


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp('eval')
    checkpoint = root / 'toy.pth'
    model, _ = load_model(CONFIG, cfg_options=OPTIONS)
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    out = root / 'run' / 'images'
    options = dict(OPTIONS, **{'test_evaluator.out_dir': str(out)})
    metrics = run_test(CONFIG, str(checkpoint), work_dir=str(root / 'run'),
                       cfg_options=options)
    card = next((root / 'run').glob('*/eval_card.json'))
    return root, checkpoint, out, metrics, card, model


def test_toy_janus_writes_the_official_geneval_layout(evaluated):
    _, _, out, metrics, _, _ = evaluated
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == [f'{i:05d}' for i in range(12)]
    for i, folder in enumerate(folders):
        meta = json.loads((out / folder / 'metadata.jsonl').read_text())
        assert meta['tag'] == TAGS[i // 2]
        samples = sorted(p.name for p in (out / folder / 'samples').iterdir())
        assert samples == ['00000.png', '00001.png']
    records = [json.loads(line) for line in
               (out / 'results.jsonl').read_text().splitlines()]
    assert len(records) == 24
    assert set(records[0]) == {'filename', 'tag', 'prompt', 'correct',
                               'reason', 'metadata', 'details'}
    # The metrics are the written per-image verdicts, averaged by tag.
    for tag in TAGS:
        verdicts = [r['correct'] for r in records if r['tag'] == tag]
        assert metrics[f'geneval_shapes/{tag}'] == np.mean(verdicts), tag
    assert metrics['geneval_shapes/overall'] == pytest.approx(
        np.mean([metrics[f'geneval_shapes/{t}'] for t in TAGS]))
    # The pretrained model draws most prompts, not all: scores that a
    # broken pipeline (all 0) or a broken scorer (all 1) cannot fake.
    assert 0.4 < metrics['geneval_shapes/overall'] < 1
    assert len({metrics[f'geneval_shapes/{t}'] for t in TAGS}) >= 3


def test_each_prompt_is_sampled_alone_with_its_seed(evaluated):
    _, _, out, _, _, model = evaluated
    for index in (3, 8):
        meta = json.loads((out / f'{index:05d}' / 'metadata.jsonl')
                          .read_text())
        # seed_policy 'index': prompt i samples with seed i.
        expected = images_of(model.generate([meta['prompt']] * 2,
                                            seed=index))
        for k in range(2):
            written = np.asarray(Image.open(
                out / f'{index:05d}' / 'samples' / f'{k:05d}.png'))
            assert np.array_equal(written, expected[k]), (index, k)


def test_edit_rows_are_sampled_alone_with_their_instruction_and_seed(
        tiny_model, monkeypatch):
    und = to_float(random_images(2))
    batch = dict(und_pixels=und, instruction=['make it red', 'add a square'],
                 seed=torch.tensor([5, 7]))
    # A random model's samples barely depend on the instruction: record
    # the instructions each row is conditioned on.
    conditioned = []
    image_condition = tiny_model.umm.image_condition

    def spy(und_embeds, instructions):
        conditioned.append(list(instructions))
        return image_condition(und_embeds, instructions)

    monkeypatch.setattr(tiny_model.umm, 'image_condition', spy)
    results = tiny_model.predict(dict(edits=batch))
    assert conditioned == [['make it red'], ['add a square']]
    assert [r['instruction'] for r in results] == batch['instruction']
    for i, result in enumerate(results):
        expected = tiny_model.edit(und[i:i + 1], [batch['instruction'][i]],
                                   seed=int(batch['seed'][i]))
        assert torch.equal(result['pred'], expected[0]), i


def test_card_records_every_setting(evaluated):
    _, checkpoint, _, metrics, card_path, _ = evaluated
    card = load_card(card_path)
    assert card['toolkit']['version'] == __import__('reca_toolkit').__version__
    assert card['checkpoint']['path'] == str(checkpoint)
    assert len(card['checkpoint']['sha256']) == 64
    sampling = card['sampling']
    assert (sampling['guidance_scale'], sampling['temperature'],
            sampling['image_tokens'], sampling['resolution']) == \
        (2.0, 1.0, 16, [[64, 64]])
    data, = card['datasets']
    assert (data['num_images'], data['seed_policy'], data['num_prompts']) == \
        (2, 'index', 12)
    assert len(data['prompt_sha256']) == 64
    scorer = card['evaluator'][0]['scorers']['detector']
    assert scorer['name'] == 'PaletteShapeDetector' and 'version' in scorer
    assert card['metrics'] == pytest.approx(metrics, rel=1e-9)
    assert card['config']['test_dataloader']['dataset']['num_prompts'] == 12


def test_card_reruns_exactly(evaluated, tmp_path):
    root, _, out, metrics, card_path, _ = evaluated
    rerun = run_test(card=str(card_path), work_dir=str(tmp_path))
    assert rerun == metrics
    again = tmp_path / 'images'
    images = sorted(out.glob('*/samples/*.png'))
    assert len(images) == 24
    for image in images:
        twin = again / image.parent.parent.name / 'samples' / image.name
        assert twin.read_bytes() == image.read_bytes()
    card = load_card(next(tmp_path.glob('*/eval_card.json')))
    assert card['metrics'] == load_card(card_path)['metrics']


def test_card_refuses_a_changed_checkpoint_or_prompt_suite(evaluated,
                                                          tmp_path):
    root, checkpoint, _, _, card_path, _ = evaluated
    card = json.loads(Path(card_path).read_text())
    card['datasets'][0]['prompt_sha256'] = '0' * 64
    changed = tmp_path / 'prompts_changed.json'
    changed.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="prompts of source 'geneval_shapes'"):
        run_test(card=str(changed), work_dir=str(tmp_path / 'a'))
    card = json.loads(Path(card_path).read_text())
    copy = root / 'tampered.pth'
    copy.write_bytes(checkpoint.read_bytes() + b'\0')
    card['checkpoint']['path'] = str(copy)
    tampered = tmp_path / 'ckpt_changed.json'
    tampered.write_text(json.dumps(card))
    with pytest.raises(ValueError, match='has SHA-256'):
        run_test(card=str(tampered), work_dir=str(tmp_path / 'b'))


def test_card_lists_each_set_of_an_evaluation_of_several():
    from reca_toolkit.evaluation.card import dataset_infos
    from reca_toolkit.registry import DATASETS
    sets = DATASETS.build(dict(type='EvalSets', datasets=[
        dict(type='GenEvalShapesPrompts', num_prompts=6),
        dict(type='HeldOutImages', name='describe',
             source=dict(type='ShapeScenes', num_scenes=2))]))
    infos = dataset_infos(sets)
    assert [i['source'] for i in infos] == ['geneval_shapes', 'describe']
    assert infos[0]['num_prompts'] == 6 and infos[1]['num_images'] == 2
