"""The shipped tiny pretrained Janus and the README's main command."""
import json

import pytest
import torch

import projects.janus_toy.janus_toy  # noqa: F401  registers the toy's parts
from conftest import REPO
from test_train_e2e import run_tool

CHECKPOINT = REPO / 'projects/janus_toy/pretrained'
CONFIG = 'configs/reca/janus_toy.py'


@pytest.fixture(scope='module')
def umm():
    from reca_toolkit.registry import UMMS
    return UMMS.build(dict(
        type='JanusProUMM', pretrained=str(CHECKPOINT),
        weights_dtype='float32', system_prompt='',
        gen_tokenizer=dict(type='PatchLookupTokenizer')))


def test_checkpoint_is_small_safetensors():
    weights = list(CHECKPOINT.glob('*.safetensors'))
    assert weights
    assert sum(p.stat().st_size for p in CHECKPOINT.iterdir()) < 20e6


def test_checkpoint_loads_and_generates_what_it_is_asked(umm):
    from reca_toolkit.evaluation.scorers.palette import PaletteShapeDetector
    assert umm.gen_tokenizer.num_codes == 19
    prompts = [f'a photo of a {shape}'
               for shape in ('circle', 'square', 'triangle')] * 4
    generator = torch.Generator().manual_seed(0)
    images = umm.generate(umm.text_condition(prompts), generator=generator)
    assert images.shape == (12, 3, 64, 64)
    detector = PaletteShapeDetector()
    pixels = ((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
    found = [[d.label for d in detector(p.numpy())] for p in pixels]
    # The asked-for shape, alone. A model that ignores the prompt and draws
    # one shape at random passes 11 of 12 with probability 5e-5.
    right = [f == [p.split()[-1]] for p, f in zip(prompts, found)]
    assert sum(right) >= 11, found


def test_checkpoint_describes_scenes(umm):
    from PIL import Image

    from projects.janus_toy.janus_toy import GenEvalShapesScenes
    from reca_toolkit.datasets.transforms import ImageViews
    scenes = GenEvalShapesScenes(num_scenes=8, seed=123,
                                 include_held_out=True)
    view = ImageViews(und_size=64)
    samples = [scenes.raw(i) for i in range(len(scenes))]
    pixels = torch.stack([
        view(dict(img=Image.fromarray(s['img'])))['und_pixels']
        for s in samples]).float() / 127.5 - 1
    conversations = [s['conversations'] for s in samples]
    right = umm.understanding_loss(pixels, conversations)
    wrong = umm.understanding_loss(pixels, conversations[1:]
                                   + conversations[:1])
    # Pretraining reached token accuracy 0.98 on such descriptions.
    assert right['acc'] > 0.9
    assert right['loss'] < wrong['loss'] - 1.0


def test_main_command_prints_scores_before_and_after(tmp_path):
    proc = run_tool(
        'tools/train.py', CONFIG, '--work-dir', tmp_path, '--cfg-options',
        'train_cfg.max_iters=4', 'train_cfg.val_interval=2',
        'train_dataloader.batch_size=4', 'default_hooks.logger.interval=1',
        'val_dataloader.dataset.datasets.0.num_prompts=12',
        'val_dataloader.dataset.datasets.1.source.num_scenes=8')
    out = proc.stdout + proc.stderr
    assert 'validation at iteration 0 (before) and 4 (after)' in out
    for tag in ('single_object', 'color_attr', 'overall'):
        assert f'geneval_shapes/{tag}' in out
    # Understanding is validated too: held-out scenes described and scored.
    assert 'describe/accuracy' in out and 'describe/object_f1' in out
    result = json.loads(next(tmp_path.glob('*/before_after.json'))
                        .read_text())
    assert result['before_iter'] == 0 and result['after_iter'] == 4
    assert set(result['before']) == set(result['after'])
    scalars = [json.loads(line) for line in next(
        tmp_path.glob('*/vis_data/scalars.json')).read_text().splitlines()]
    assert 0 <= result['after']['describe/accuracy'] <= 1
    for quality in ('collapse/t2i_quality', 'collapse/und_quality'):
        monitored = [s for s in scalars if quality in s]
        # Before training, then at iterations 2 and 4, with the logged
        # reconstruction loss of the iterations in between.
        assert [s['step'] for s in monitored] == [0, 2, 4]
        assert 'collapse/recon_loss' not in monitored[0]
        assert all(s['collapse/recon_loss'] > 0 for s in monitored[1:])
