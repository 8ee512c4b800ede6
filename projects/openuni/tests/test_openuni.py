"""OpenUni-specific behaviour: the template, what trains, the weights."""
import sys
from pathlib import Path

import pytest
import torch

_TESTS = str(Path(__file__).resolve().parents[3] / 'tests')
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from conftest import (no_network, random_images, registered,  # noqa: E402,F401
                      to_float)
from test_umm_conformance import model_cfg  # noqa: E402

import projects.openuni.openuni  # noqa: E402,F401
from projects.openuni.openuni.weights import (  # noqa: E402
    check_openuni_weights, resolve_paths)
from test_openuni_conformance import OPENUNI  # noqa: E402


def build(**umm):
    from reca_toolkit.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(model_cfg(OPENUNI, **umm))


@pytest.fixture(scope='module')
def model():
    return build()


def pixels(size=2, seed=0):
    return to_float(random_images(size, OPENUNI.image_size, seed=seed))


def test_image_condition_layout(model):
    """``<|im_start|>user\\n<img>[N]</img>\\n{instruction}<|im_end|>\\n
    <|im_start|>assistant\\n<img>``, the embeddings at the context
    positions, then (in the loss) the meta-queries."""
    umm = model.umm
    with torch.no_grad():
        embeds = umm.encode_understanding(pixels())
    assert embeds.shape == (2, 16, 64)  # 8 x 8 patches, pixel shuffle 0.5
    cond = umm.image_condition(embeds, ['Describe it.', None])
    tok = umm.tokenizer
    n = embeds.shape[1]
    head = tok('<|im_start|>user\n<img>',
               add_special_tokens=False)['input_ids']
    tail = tok('</img>\nDescribe it.<|im_end|>\n<|im_start|>assistant\n<img>',
               add_special_tokens=False)['input_ids']
    table = umm.llm.get_input_embeddings().weight
    row = cond.embeds[0][cond.mask[0].bool()]
    assert len(row) == len(head) + n + len(tail)
    torch.testing.assert_close(row[:len(head)], table[head])
    torch.testing.assert_close(row[len(head):len(head) + n], embeds[0])
    torch.testing.assert_close(row[len(head) + n:], table[tail])
    # the generic instruction is "Generate an image."
    generic = tok('</img>\nGenerate an image.<|im_end|>\n<|im_start|>'
                  'assistant\n<img>', add_special_tokens=False)['input_ids']
    row = cond.embeds[1][cond.mask[1].bool()]
    torch.testing.assert_close(row[len(head) + n:], table[generic])
    null = umm.text_condition([None])
    null_ids = tok('<|im_start|>user\nGenerate an image.<|im_end|>\n'
                   '<|im_start|>assistant\n<img>',
                   add_special_tokens=False)['input_ids']
    torch.testing.assert_close(null.embeds[0], table[null_ids])


def test_meta_queries_follow_the_prompt_into_sana(model):
    umm = model.umm
    cond = umm.text_condition(['a red circle'])
    seen = {}

    def spy(module, args, kwargs, output):
        seen['states'] = kwargs['encoder_hidden_states']
        seen['mask'] = kwargs.get('encoder_attention_mask')

    handle = umm.transformer.register_forward_hook(spy, with_kwargs=True)
    try:
        umm.generation_loss(cond, pixels(1), draws=[0])
    finally:
        handle.remove()
    # 16 meta-queries -> connector -> projector -> caption_channels 48
    assert seen['states'].shape == (1, 16, 48) and seen['mask'] is None
    torch.testing.assert_close(seen['states'], umm.prompt_states(cond))


def test_meta_queries_connector_and_sana_train_internvl_frozen():
    model = build()
    umm = model.umm
    before = {n: p.detach().clone() for n, p in umm.named_parameters()}
    optim = torch.optim.SGD([p for p in umm.parameters() if p.requires_grad],
                            lr=0.1)
    data = dict(recon=dict(und_pixels=pixels(), gen_pixels=pixels(),
                           draw=torch.arange(2)))
    model.loss(data)['loss_recon'].backward()
    optim.step()
    changed = {n for n, p in umm.named_parameters()
               if not torch.equal(p, before[n])}
    assert any(n.startswith('meta_queries.') for n in changed)
    assert any(n.startswith('connector.') for n in changed)
    assert any(n.startswith('projector.') for n in changed)
    assert any(n.startswith('transformer.') for n in changed)
    frozen = ('vision.', 'llm.', 'lm_head.', 'gen_tokenizer.')
    assert not any(n.startswith(frozen) for n in changed)
    assert all(not p.requires_grad for n, p in umm.named_parameters()
               if n.startswith(frozen))


def test_checkpointing_recomputes_the_frozen_llm_and_keeps_gradients():
    """Gradients cross the frozen LLM (meta-queries -> connector), so its
    activations are kept like a trainable part's: checkpointing recomputes
    its layers, the connector's and SANA's in the backward, with the same
    gradients, while the LLM's attention stays in eval mode."""
    data = dict(recon=dict(und_pixels=pixels(), gen_pixels=pixels(),
                           draw=torch.arange(2)))
    grads, calls = [], []
    for switch in (False, True):
        model = build(gradient_checkpointing=switch)
        model.train()
        umm = model.umm
        count = {}
        # transformers checkpoints a layer's forward, inside its hooks, and
        # the recompute stops once the last saved tensor is back: count the
        # starts of a module within each layer.
        inner = dict(llm=umm.llm.layers[0].mlp,
                     connector=umm.connector.encoder.layers[0].mlp,
                     sana=umm.transformer.transformer_blocks[0].ff)
        for name, module in inner.items():
            module.register_forward_pre_hook(
                lambda *_, name=name: count.update({name: count.get(name, 0)
                                                    + 1}))
        model.loss(data)['loss_recon'].backward()
        calls.append(count)
        grads.append({n: p.grad for n, p in umm.named_parameters()
                      if p.grad is not None})
        assert not umm.llm.layers[0].self_attn.training
    assert calls[0] == dict(llm=1, connector=1, sana=1)
    assert calls[1] == dict(llm=2, connector=2, sana=2)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name],
                                   rtol=1e-5, atol=1e-7)


def test_missing_parts_are_named_before_building(tmp_path):
    (tmp_path / 'internvl').mkdir()
    (tmp_path / 'internvl' / 'config.json').write_text('{}')
    with pytest.raises(FileNotFoundError) as error:
        check_openuni_weights(resolve_paths(tmp_path))
    message = str(error.value)
    for part in ('checkpoint', 'internvl', 'sana', 'dcae'):
        assert f'{part}:' in message, part
    assert 'model.safetensors' in message and 'tokenizer.json' in message
    assert 'wusize/openuni' in message and 'dc-ae-f32c32' in message
    with pytest.raises(FileNotFoundError, match='sana: no path given'):
        check_openuni_weights(resolve_paths(
            None, dict(checkpoint=tmp_path / 'x.pth')))
    with pytest.raises(FileNotFoundError, match='checkpoint'):
        build(config=None, tokenizer=None, pretrained=str(tmp_path))


def test_loads_separate_folders_and_a_pth(model, tmp_path):
    """The published layout: four separate paths, the OpenUni part a
    ``.pth`` loaded with weights_only."""
    out = model.umm.save_pretrained(tmp_path / 'export')
    weights = dict(checkpoint=str(out / 'openuni.pth'),
                   internvl=str(out / 'internvl'), sana=str(out / 'sana'),
                   dcae=str(out / 'dc-ae'))
    (out / 'openuni.safetensors').unlink()
    loaded = build(config=None, tokenizer=None, weights=weights,
                   connector=dict(hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2,
                                  num_attention_heads=4),
                   num_queries=16)
    for name, param in model.umm.state_dict().items():
        torch.testing.assert_close(loaded.umm.state_dict()[name], param)
    assert set(loaded.umm.frozen) == set(OPENUNI.frozen)


def test_demo_config_trains_through_the_tools(tmp_path):
    """The extension path end to end: tools/train.py imports the project
    through custom_imports and trains a few iterations."""
    import json

    from test_train_e2e import run_tool
    run_tool('tools/train.py', 'projects/openuni/configs/openuni_demo.py',
             '--work-dir', tmp_path, '--cfg-options',
             'train_cfg.max_iters=2', 'custom_hooks=[]',
             'default_hooks.logger.interval=1')
    assert (tmp_path / 'iter_2.pth').is_file()
    records = [json.loads(line) for line in next(
        tmp_path.glob('*/vis_data/scalars.json')).read_text().splitlines()]
    assert len(records) == 2 and all(r['loss_recon'] > 0 for r in records)


@pytest.mark.parametrize('variant, width, mlp, heads', [
    ('b', 896, 3072, 14), ('l', 1536, 8960, 24)])
def test_published_connector_sizes_and_key_names(variant, width, mlp, heads):
    """wusize/OpenUni configs/models/openuni_{b,l}_*_512_hf.py: 6 layers at
    the LLM's width; keys as the checkpoint's ``connector.`` entries."""
    from projects.openuni.openuni.openuni_umm import (OPENUNI_ARCHITECTURES,
                                                      Connector)
    config = OPENUNI_ARCHITECTURES[variant]['connector']
    with torch.device('meta'):
        connector = Connector(config)
    layer = 4 * (width * width + width) + 2 * width * mlp + mlp + width + \
        4 * width
    assert sum(p.numel() for p in connector.parameters()) == 6 * layer
    assert connector.encoder.layers[0].self_attn.head_dim == width // heads
    keys = set(connector.encoder.state_dict())
    assert {'layers.5.self_attn.out_proj.weight', 'layers.0.layer_norm1.bias',
            'layers.0.mlp.fc1.weight', 'layers.0.layer_norm2.weight'} <= keys
    assert not any(k.startswith(('post_layernorm', 'norm')) for k in keys)
