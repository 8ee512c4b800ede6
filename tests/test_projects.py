"""A project adds a component through the registries, no core file edited."""
import json

from test_train_e2e import run_tool

CONFIG = 'projects/example_project/configs/janus_demo_pooled.py'


def test_example_project_trains(tmp_path):
    run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path,
             '--cfg-options', 'train_cfg.max_iters=3', 'custom_hooks=[]',
             'train_dataloader.batch_size=4',
             'default_hooks.logger.interval=1')
    assert (tmp_path / 'iter_3.pth').is_file()
    assert 'PooledSigLIPEncoder' in (tmp_path / 'janus_demo_pooled.py'
                                     ).read_text()
    records = [json.loads(line) for line in next(
        tmp_path.glob('*/vis_data/scalars.json')).read_text().splitlines()]
    assert len(records) == 3 and all(r['loss'] > 0 for r in records)


def test_pooled_encoder_gives_fewer_tokens():
    import torch

    import projects.example_project.pooled_encoder  # noqa: F401 registers
    from conftest import build_tiny_model, random_images, to_float
    # Two by two pooling of the 4 x 4 SigLIP grid leaves 4 tokens.
    model = build_tiny_model(und_encoder=dict(type='PooledSigLIPEncoder',
                                              pool=2))
    embeds = model.umm.encode_understanding(to_float(random_images(2)))
    assert embeds.shape == (2, 4, 64)
    assert embeds.requires_grad and torch.isfinite(embeds).all()
