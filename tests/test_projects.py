"""A project adds a component through the registries, no core file edited."""
import torch

import projects.example_project.pooled_encoder  # noqa: F401 registers
from conftest import build_tiny_model, random_images, to_float
from test_train_e2e import checkpoint, losses, run_tool

CONFIG = 'projects/example_project/configs/janus_demo_pooled.py'


def test_example_project_trains(tmp_path):
    run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path,
             '--cfg-options', 'train_cfg.max_iters=3', 'custom_hooks=[]',
             'train_dataloader.batch_size=4',
             'default_hooks.logger.interval=1',
             'default_hooks.checkpoint.interval=1',
             'default_hooks.checkpoint.max_keep_ckpts=3')
    assert 'PooledSigLIPEncoder' in (tmp_path / 'janus_demo_pooled.py'
                                     ).read_text()
    for key in ('loss_recon', 'loss_i2t'):
        assert sorted(losses(tmp_path, key)) == [1, 2, 3], key
    # Iterations 2 and 3 trained every part but the frozen SigLIP and VQ.
    first, last = (checkpoint(tmp_path, i)['state_dict'] for i in (1, 3))
    parts = {name: '.'.join(name.split('.')[1:3]) for name in last}
    moved = {parts[name] for name, value in last.items()
             if not torch.equal(value, first[name])}
    assert moved == set(parts.values()) - {'und_encoder.vision_model',
                                           'gen_tokenizer.vqmodel'}
    # The trained weights load into the project's model, which pools.
    model = build_tiny_model(und_encoder=dict(type='PooledSigLIPEncoder',
                                              pool=2))
    model.load_state_dict(last)
    with torch.no_grad():
        embeds = model.umm.encode_understanding(to_float(random_images(2)))
    assert embeds.shape == (2, 4, 64)


def test_pooled_encoder_gives_fewer_tokens():
    # Two by two pooling of the 4 x 4 SigLIP grid leaves 4 tokens.
    model = build_tiny_model(und_encoder=dict(type='PooledSigLIPEncoder',
                                              pool=2))
    embeds = model.umm.encode_understanding(to_float(random_images(2)))
    assert embeds.shape == (2, 4, 64)
    assert embeds.requires_grad and torch.isfinite(embeds).all()
