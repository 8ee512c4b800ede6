"""An evaluation of the tiny Janus end to end: prompts -> RecAModel.predict
-> GenEval-Shapes in the official layout -> an evaluation card, and the card
re-run."""
import json
from pathlib import Path

import pytest
import torch

from conftest import REPO, build_tiny_model
from reca_toolkit.engine import test as run_test
from reca_toolkit.evaluation.card import load_card

CONFIG = str(REPO / 'configs/eval/geneval_shapes_janus_tiny.py')


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp('eval')
    checkpoint = root / 'tiny.pth'
    torch.save({'state_dict': build_tiny_model(seed=3).state_dict()},
               checkpoint)
    out = root / 'run' / 'images'
    metrics = run_test(CONFIG, str(checkpoint), work_dir=str(root / 'run'),
                       cfg_options={
                           'test_dataloader.dataset.num_prompts': 6,
                           'test_dataloader.dataset.num_images': 2,
                           'test_dataloader.batch_size': 4,
                           'test_evaluator.out_dir': str(out)})
    card = next((root / 'run').glob('*/eval_card.json'))
    return root, checkpoint, out, metrics, card


def test_tiny_janus_writes_the_official_geneval_layout(evaluated):
    _, _, out, metrics, _ = evaluated
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == [f'{i:05d}' for i in range(6)]
    for i, folder in enumerate(folders):
        meta = json.loads((out / folder / 'metadata.jsonl').read_text())
        assert meta['tag'] == ['single_object', 'two_object', 'counting',
                               'colors', 'position', 'color_attr'][i]
        samples = sorted(p.name for p in (out / folder / 'samples').iterdir())
        assert samples == ['00000.png', '00001.png']
    lines = (out / 'results.jsonl').read_text().splitlines()
    assert len(lines) == 12
    assert set(json.loads(lines[0])) == {'filename', 'tag', 'prompt',
                                         'correct', 'reason', 'metadata',
                                         'details'}
    assert 0 <= metrics['geneval_shapes/overall'] <= 1
    assert set(metrics) >= {f'geneval_shapes/{t}' for t in (
        'single_object', 'two_object', 'counting', 'colors', 'position',
        'color_attr', 'overall', 'prompt_accuracy')}


def test_card_records_every_setting(evaluated):
    _, checkpoint, _, metrics, card_path = evaluated
    card = load_card(card_path)
    assert card['toolkit']['version'] == __import__('reca_toolkit').__version__
    assert card['checkpoint']['path'] == str(checkpoint)
    assert len(card['checkpoint']['sha256']) == 64
    sampling = card['sampling']
    assert (sampling['guidance_scale'], sampling['temperature'],
            sampling['image_tokens'], sampling['resolution']) == \
        (5.0, 1.0, 16, [[64, 64]])
    data, = card['datasets']
    assert (data['num_images'], data['seed_policy'], data['num_prompts']) == \
        (2, 'index', 6)
    assert len(data['prompt_sha256']) == 64
    scorer = card['evaluator'][0]['scorers']['detector']
    assert scorer['name'] == 'PaletteShapeDetector' and 'version' in scorer
    assert card['metrics'] == pytest.approx(metrics)
    assert card['config']['test_dataloader']['dataset']['num_prompts'] == 6


def test_card_reruns_exactly(evaluated, tmp_path):
    root, _, out, metrics, card_path = evaluated
    rerun = run_test(card=str(card_path), work_dir=str(tmp_path))
    assert rerun == metrics
    again = tmp_path / 'images'
    for image in out.glob('*/samples/*.png'):
        twin = again / image.parent.parent.name / 'samples' / image.name
        assert twin.read_bytes() == image.read_bytes()
    assert next(tmp_path.glob('*/eval_card.json')).is_file()


def test_card_refuses_a_changed_checkpoint_or_prompt_suite(evaluated,
                                                          tmp_path):
    root, checkpoint, _, _, card_path = evaluated
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
