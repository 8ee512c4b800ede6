"""The command-line tools on a briefly trained tiny Janus."""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from test_train_e2e import CONFIG, run_tool


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('trained')
    run_tool('tools/train.py', CONFIG, '--work-dir', work_dir,
             '--cfg-options', 'train_cfg.max_iters=2', 'custom_hooks=[]')
    return work_dir / 'iter_2.pth'


def test_generate_writes_prompt_and_reconstruction_pngs(checkpoint, tmp_path,
                                                        image_folder):
    images = sorted(image_folder.glob('*.png'))[:1] + sorted(
        image_folder.glob('*.jpg'))[:1]
    out = tmp_path / 'samples'
    proc = run_tool('tools/generate.py', CONFIG, checkpoint, '--prompt',
                    'a red circle', 'a blue square', '--reconstruct', *images,
                    '--out', out, '--seed', '3')
    names = sorted(p.name for p in out.glob('*.png'))
    assert names == ['prompt_000.png', 'prompt_001.png', 'prompts_grid.png',
                     'recon_000.png', 'recon_001.png', 'recon_grid.png']
    assert Image.open(out / 'prompt_000.png').size == (64, 64)
    # Inputs above reconstructions: two rows of two 64 px tiles, 2 px gaps.
    assert Image.open(out / 'recon_grid.png').size == (134, 134)
    assert (out / 'prompts.txt').read_text().splitlines()[1] == \
        'prompt_001.png\ta blue square'
    assert str(out / 'recon_grid.png') in proc.stdout
    # The same seed gives the same samples.
    again = tmp_path / 'again'
    run_tool('tools/generate.py', CONFIG, checkpoint, '--prompt',
             'a red circle', 'a blue square', '--out', again, '--seed', '3')
    assert np.array_equal(np.asarray(Image.open(out / 'prompts_grid.png')),
                          np.asarray(Image.open(again / 'prompts_grid.png')))


def test_generate_needs_something_to_do(checkpoint, tmp_path):
    proc = run_tool('tools/generate.py', CONFIG, checkpoint, '--out',
                    tmp_path, check=False)
    assert proc.returncode != 0
    assert 'give --prompt and/or --reconstruct' in proc.stderr


def test_export_hf_loads_with_from_pretrained(checkpoint, tmp_path):
    from transformers import JanusForConditionalGeneration, JanusProcessor
    out = tmp_path / 'hf'
    run_tool('tools/model_converters/export_hf.py', CONFIG, checkpoint, out)
    model = JanusForConditionalGeneration.from_pretrained(
        out, local_files_only=True)
    JanusProcessor.from_pretrained(out, local_files_only=True)
    trained = torch.load(checkpoint, weights_only=True)['state_dict']
    exported = model.state_dict()
    head = 'model.generation_head.vision_head.weight'
    torch.testing.assert_close(
        exported[head], trained['umm.generator.head.vision_head.weight'])
    torch.testing.assert_close(
        exported['lm_head.weight'], trained['umm.lm_head.weight'])
    # Refuses to overwrite a finished export.
    proc = run_tool('tools/model_converters/export_hf.py', CONFIG,
                    checkpoint, out, check=False)
    assert proc.returncode != 0 and 'is not empty' in proc.stderr


def test_print_config_shows_the_merged_config():
    proc = run_tool('tools/misc/print_config.py',
                    REPO / 'configs/reca/janus_pro.py', '--cfg-options',
                    'train_dataloader.batch_size=3')
    assert "type='JanusProUMM'" in proc.stdout
    assert 'batch_size=3' in proc.stdout
    assert "pretrained='checkpoints/Janus-Pro-1B'" in proc.stdout


def test_training_exports_hf_folder_when_it_ends(tmp_path):
    from transformers import JanusForConditionalGeneration
    config = tmp_path / 'export.py'
    config.write_text(f"""_base_ = ['{CONFIG}']
custom_hooks = [dict(type='HFExportHook', out_dir='hf')]
""")
    run_tool('tools/train.py', config, '--work-dir', tmp_path / 'work',
             '--cfg-options', 'train_cfg.max_iters=2')
    model = JanusForConditionalGeneration.from_pretrained(
        tmp_path / 'work' / 'hf', local_files_only=True)
    trained = torch.load(tmp_path / 'work' / 'iter_2.pth',
                         weights_only=True)['state_dict']
    torch.testing.assert_close(model.lm_head.weight,
                               trained['umm.lm_head.weight'])


def test_export_carries_the_source_folders_processor_files(tmp_path):
    from conftest import build_tiny_model
    source = tmp_path / 'Janus-Pro-tiny'
    build_tiny_model().umm.save_pretrained(source)
    (source / 'chat_template.jinja').write_text('{{ messages }} carried')
    umm = build_tiny_model(pretrained=str(source), config=None,
                           tokenizer=None).umm
    out = umm.save_pretrained(tmp_path / 'export')
    for name in ('chat_template.jinja', 'tokenizer.json',
                 'tokenizer_config.json', 'processor_config.json'):
        assert (out / name).read_bytes() == (source / name).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]
