"""What is BAGEL's own: the Mixture-of-Transformers routing and freeze_und,
the packed splits' attention and rotary positions, SigLIP at layer -2, the
fixed embeddings, upstream's key names and the weights folder. What every
family does is in test_umm_conformance.py."""
import base64
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import random_images, to_float
from test_umm_conformance import FAMILIES, build

BAGEL = next(f for f in FAMILIES if f.name == 'bagel')


@pytest.fixture(scope='module')
def umm():
    return build(BAGEL).umm.eval()


def pixels(size=2, seed=0, image_size=32):
    return to_float(random_images(size, image_size, seed=seed))


def ids(umm, text):
    return umm.tokenizer(text, add_special_tokens=False)['input_ids']


def tiny_llm_config(**overrides):
    from transformers import Qwen2Config
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, qk_norm=True, **overrides)
    config._attn_implementation = 'eager'
    return config


def mot(freeze_und=False, seed=0):
    from reca_toolkit.models.umm.bagel import build_language_model
    torch.manual_seed(seed)
    model = build_language_model(tiny_llm_config(), freeze_und).model
    with torch.no_grad():  # norms start at one; make each expert's its own
        for name, param in model.named_parameters():
            if name.endswith('norm.weight') or 'norm_moe_gen' in name \
                    or 'layernorm' in name:
                param.uniform_(0.5, 1.5)
    return model


def packed_plan(length_vit=3, length_text=3, length_vae=4):
    """One row: ViT split (full, one position), text split (causal), VAE
    split (full, one position), its inner tokens generation tokens."""
    from reca_toolkit.models.umm.base import attention_bias
    n = length_vit + length_text + length_vae
    blocks = torch.tensor([[1] * length_vit + [0] * length_text +
                           [3] * length_vae])
    positions = torch.tensor([[0] * length_vit +
                              list(range(1, 1 + length_text)) +
                              [1 + length_text] * length_vae])
    gen = torch.zeros(1, n, dtype=torch.bool)
    gen[0, length_vit + length_text + 1:n - 1] = True
    mask = torch.ones(1, n, dtype=torch.long)
    return dict(attention_mask=attention_bias(mask, blocks, torch.float32),
                position_ids=positions, gen_mask=gen)


# the Mixture-of-Transformers -------------------------------------------------
def test_generation_tokens_never_change_understanding_outputs_before_them():
    model, plan = mot(), packed_plan()
    x = torch.randn(1, 10, 32)
    out = model(inputs_embeds=x, **plan).last_hidden_state
    changed = x.clone()
    changed[0, 7:9] += torch.randn(2, 32)  # the VAE split's latents
    again = model(inputs_embeds=changed, **plan).last_hidden_state
    torch.testing.assert_close(again[0, :6], out[0, :6], rtol=0, atol=0)
    assert (again[0, 6:] - out[0, 6:]).abs().amax(-1).min() > 1e-4


def test_each_token_goes_through_its_own_expert():
    """All-generation rows of the MoT equal all-understanding rows of a
    copy whose understanding weights are the generation expert's."""
    model, plan = mot(), packed_plan()
    swapped = mot(seed=1)
    state = model.state_dict()
    swapped.load_state_dict(dict(state, **{
        k.replace('_moe_gen', ''): v for k, v in state.items()
        if '_moe_gen' in k}))
    x = torch.randn(1, 10, 32)
    everything_gen = dict(plan, gen_mask=torch.ones(1, 10, dtype=torch.bool))
    everything_und = dict(plan, gen_mask=torch.zeros(1, 10,
                                                     dtype=torch.bool))
    torch.testing.assert_close(
        model(inputs_embeds=x, **everything_gen).last_hidden_state,
        swapped(inputs_embeds=x, **everything_und).last_hidden_state)
    # And the experts differ: the same rows through understanding differ.
    assert not torch.allclose(
        model(inputs_embeds=x, **everything_und).last_hidden_state,
        model(inputs_embeds=x, **everything_gen).last_hidden_state)


@pytest.mark.parametrize('freeze_und', [True, False])
def test_freeze_und_detaches_the_understanding_expert(freeze_und):
    model, plan = mot(freeze_und), packed_plan()
    x = torch.randn(1, 10, 32, requires_grad=True)
    out = model(inputs_embeds=x, **plan).last_hidden_state
    (out[0, 7:9] ** 2).sum().backward()  # a loss on generation tokens
    und = [p.grad for n, p in model.named_parameters()
           if '_moe_gen' not in n and n != 'embed_tokens.weight']
    gen = [p.grad for n, p in model.named_parameters() if '_moe_gen' in n]
    assert all(g is not None and g.abs().sum() > 0 for g in gen)
    und_norm = sum(float(g.abs().sum()) for g in und if g is not None)
    if freeze_und:
        assert und_norm == 0
        assert x.grad[0, :7].abs().sum() == 0  # understanding inputs too
    else:
        assert und_norm > 0 and x.grad[0, :7].abs().sum() > 0


def test_activation_checkpointing_of_the_mot_layers_changes_nothing():
    """The 7B configs checkpoint every MoT layer: same loss, same
    gradients."""
    from test_umm_conformance import batch, without_zero_init
    results = []
    for switch in (False, True):
        model = without_zero_init(build(BAGEL, gradient_checkpointing=switch))
        layer = model.umm.language_model.model.layers[0]
        assert layer.gradient_checkpointing is switch
        losses = model.loss(batch(BAGEL))
        losses['loss_recon'].backward()
        results.append((losses['loss_recon'].detach(), torch.cat(
            [p.grad.flatten() for p in model.parameters()
             if p.grad is not None])))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])


# packed splits ---------------------------------------------------------------
def test_attention_plan_reaches_what_upstream_lets_each_token_see(umm):
    """Which inputs each output depends on: the ViT split sees itself, text
    sees the ViT split and earlier text, the VAE split sees everything."""
    embeds = umm.encode_understanding(pixels(1)).detach()
    condition = umm.image_condition(embeds, ['Describe it.'])
    grid = (2, 2)
    from reca_toolkit.models.umm.bagel import extend_condition
    from reca_toolkit.models.umm.base import attention_bias
    tail = torch.randn(1, 5, embeds.shape[-1])
    tail_gen = torch.tensor([True] * 4 + [False])
    x, mask, positions, blocks, gen = extend_condition(condition, tail,
                                                       tail_gen)
    n = x.shape[1]
    # Row j + 1 perturbs input j; row 0 is the reference.
    rows = x.detach().repeat(n + 1, 1, 1)
    rows[1:] += torch.eye(n)[:, :, None] * torch.randn(n, 1, x.shape[-1])
    with torch.no_grad():
        out = umm.backbone(
            inputs_embeds=rows,
            attention_mask=attention_bias(mask, blocks,
                                          x.dtype).expand(n + 1, -1, -1, -1),
            position_ids=positions.expand(n + 1, -1),
            gen_mask=gen.expand(n + 1, -1)).last_hidden_state
    seen = ((out[1:] - out[:1]).abs().amax(-1) > 0).T  # [output, input]
    vit = 16 + 2
    text = len(ids(umm, 'Describe it.')) + 2
    expected = torch.zeros(n, n, dtype=torch.bool)
    expected[:vit, :vit] = True
    for i in range(vit, vit + text):
        expected[i, :i + 1] = True
    expected[vit + text:, :] = True
    assert grid[0] * grid[1] + 2 == n - vit - text
    assert torch.equal(seen, expected)


def test_splits_share_one_rotary_position_per_image(umm):
    embeds = umm.encode_understanding(pixels(1)).detach()
    text = ids(umm, 'Describe it.')
    condition = umm.image_condition(embeds, ['Describe it.'])
    vit = [0] * 18
    expected = vit + list(range(1, len(text) + 3)) + [len(text) + 3]
    assert condition.positions[0].tolist() == expected
    assert condition.blocks[0].tolist() == \
        [1] * 18 + [0] * (len(text) + 2) + [3]
    start, end = umm.ids['start'], umm.ids['end']
    tokens = condition.embeds[0]
    table = umm.backbone.get_input_embeddings().weight
    torch.testing.assert_close(tokens[0], table[start])
    torch.testing.assert_close(tokens[17], table[end])
    torch.testing.assert_close(tokens[18], table[umm.ids['bos']])
    torch.testing.assert_close(tokens[-1], table[start])


def test_generic_instruction_drops_the_whole_text_split(umm):
    """Upstream's text_cond_dropout removes the split: ViT split, then the
    VAE split's start, nothing between."""
    embeds = umm.encode_understanding(pixels(1)).detach()
    condition = umm.image_condition(embeds, [None])
    assert condition.mask.sum() == 18 + 1
    assert condition.positions[0].tolist() == [0] * 18 + [1]
    null = umm.null_condition(condition)
    assert null.mask.tolist() == [[1]] and null.positions.tolist() == [[0]]


def test_conversation_scores_answers_after_their_bos(umm):
    splits, labels = umm.conversation_tokens([('Q?', 'Yes.')], 16)
    answer = ids(umm, 'Yes.')
    tokens = sum((s[1] for s in splits), [])
    assert len(tokens) == len(labels)
    scored = [t for t, label in zip(tokens, labels) if label != -100]
    assert scored == answer + [umm.ids['eos']]
    assert [label for label in labels if label != -100] == scored


def test_vae_posterior_is_sampled_from_each_samples_seed(umm):
    """Upstream's FLUX encoder samples its posterior; here from each
    sample's seed, so a sample's latents do not depend on its batch."""
    image = pixels(2)
    with torch.no_grad():
        drawn = umm._latents(image, seeds=[1, 2])
        swapped = umm._latents(image[[1, 0]], seeds=[2, 1])
        mode = umm.gen_tokenizer.vae.encode(image).latent_dist.mode()
    torch.testing.assert_close(swapped, drawn[[1, 0]])
    tokenizer = umm.gen_tokenizer
    expected_mode = (mode - tokenizer.shift_factor) * tokenizer.scaling_factor
    assert (drawn - expected_mode).abs().max() > 1e-3
    assert not torch.equal(drawn, umm._latents(image, seeds=[1, 3]))
    with pytest.raises(ValueError, match='sample_posterior'):
        umm.generation_targets(image)


def test_edit_context_is_clean_latents_then_vit_then_instruction(umm):
    """Upstream's editing context: the source's VAE split (its latents
    generation tokens at t = 0, one rotary position), the ViT split (the
    next), the instruction; the text-free branch drops the instruction, the
    image-free one both image splits."""
    source, text = pixels(1), 'Make it red.'
    with torch.no_grad():
        full, no_text, no_image = umm.edit_conditions(
            source, [text], source, torch.Generator().manual_seed(0))
    latents, vit, words = 64, 16, len(ids(umm, text)) + 2
    assert full.mask.sum() == latents + 2 + vit + 2 + words + 1
    assert full.positions[0].tolist() == [0] * (latents + 2) + \
        [1] * (vit + 2) + list(range(2, 2 + words)) + [2 + words]
    assert full.extras['gen'][0].tolist() == \
        [0] + [1] * latents + [0] * (vit + 3 + words + 1)
    assert no_text.mask.sum() == latents + 2 + vit + 2 + 1
    assert no_image.mask.sum() == words + 1
    assert not no_image.extras['gen'].any()
    with pytest.raises(ValueError, match='source_pixels'):
        umm.edit_conditions(source, [text], None)


def test_edit_samples_three_branches_seeded(umm):
    from reca_toolkit.models.reca import RecAModel
    model = build(BAGEL).eval()
    assert isinstance(model, RecAModel)
    source = pixels(2)
    seen = []
    hook = model.umm.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            kwargs['inputs_embeds'].shape[0]), with_kwargs=True)
    try:
        first = model.edit(source, ['Make it red.', 'Add a circle.'], seed=1,
                           source_pixels=source)
    finally:
        hook.remove()
    again = model.edit(source, ['Make it red.', 'Add a circle.'], seed=1,
                       source_pixels=source)
    assert seen and set(seen) == {6}  # 2 rows x 3 branches
    assert first.shape == source.shape and torch.isfinite(first).all()
    assert torch.equal(first, again)


def test_edits_keep_each_sources_shape():
    """Sources of two shapes in one batch (AspectViews' list): each row is
    edited at its own shape, ViT grid and latent grid alike, and the same
    source edited alone gives the same image."""
    model = build(BAGEL).eval()
    umm = model.umm
    step = umm.gen_tokenizer.downsample * umm.gen_tokenizer.patch_size
    patch = umm.vit.config.patch_size
    shapes = [(2, 3), (3, 2)]  # in tokens and patches
    gen = [torch.rand(3, h * step, w * step) * 2 - 1 for h, w in shapes]
    und = [torch.rand(3, h * patch, w * patch) * 2 - 1 for h, w in shapes]
    batch = dict(und_pixels=und, gen_pixels=gen, seed=torch.tensor([1, 2]),
                 instruction=['Make it red.', 'Add a circle.'])
    results = model.predict(dict(edit=batch))
    assert [tuple(r['pred'].shape) for r in results] == [
        (3, h * step, w * step) for h, w in shapes]
    alone = model.edit(und[1][None], ['Add a circle.'], seed=2,
                       source_pixels=gen[1][None])
    torch.testing.assert_close(results[1]['pred'], alone[0])


# understanding ---------------------------------------------------------------
def test_vit_is_siglip_up_to_its_second_to_last_layer(umm):
    """At the full position grid (64 px, 8 x 8 patches) the features equal
    transformers' whole SigLIP's second-to-last hidden state plus its
    post-layernorm."""
    from transformers import SiglipVisionConfig, SiglipVisionModel
    config = SiglipVisionConfig(**dict(umm.vit_config.to_dict(),
                                       vision_use_head=False))
    full = SiglipVisionModel(config).eval()
    full.load_state_dict(umm.vit.state_dict(), strict=False)
    image = pixels(1, image_size=64)
    with torch.no_grad():
        ours = umm.understanding_features(image)
        hidden = full(pixel_values=image,
                      output_hidden_states=True).hidden_states[-2]
        theirs = full.post_layernorm(hidden)
    torch.testing.assert_close(ours, theirs)
    assert len(umm.vit.encoder.layers) == config.num_hidden_layers - 1


def test_understanding_is_connector_plus_fixed_positions(umm):
    image = pixels(1)
    with torch.no_grad():
        features = umm.understanding_features(image)
        embeds = umm.encode_understanding(image)
        side = umm.vit_pos_embed.side
        ids_ = torch.tensor([r * side + c for r in range(4)
                             for c in range(4)])
        expected = umm.connector(features) + umm.vit_pos_embed.pos_embed[ids_]
    torch.testing.assert_close(embeds, expected)


def test_sincos_positions_follow_the_dit_formula():
    """Hand formula: the first half of the channels encodes the column, the
    second the row (MAE's meshgrid puts w first, and DiT and upstream keep
    it); each half sines then cosines of ``pos / 10000^(2i/d)``."""
    from reca_toolkit.models.umm.bagel import SinCosPositions
    width, side = 8, 3
    table = SinCosPositions(side, width).pos_embed
    omega = 1 / 10000 ** (np.arange(width // 4) / (width / 4))

    def one_d(pos):
        return np.concatenate([np.sin(pos * omega), np.cos(pos * omega)])

    for row in range(side):
        for col in range(side):
            expected = np.concatenate([one_d(col), one_d(row)])
            np.testing.assert_allclose(table[row * side + col].numpy(),
                                       expected, atol=1e-6)


def test_timestep_embedding_is_cosines_then_sines():
    from reca_toolkit.models.umm.bagel import TimestepEmbedder
    embedder = TimestepEmbedder(4, frequencies=4)
    with torch.no_grad():
        embedder.mlp[0].weight.copy_(torch.eye(4))
        embedder.mlp[0].bias.zero_()
        embedder.mlp[2].weight.copy_(torch.eye(4))
        embedder.mlp[2].bias.zero_()
    t = 0.3
    freqs = [math.exp(-math.log(10000) * i / 2) for i in range(2)]
    raw = [math.cos(t * f) for f in freqs] + [math.sin(t * f) for f in freqs]
    silu = [v / (1 + math.exp(-v)) for v in raw]
    torch.testing.assert_close(embedder(torch.tensor([t]))[0],
                               torch.tensor(silu))


# weights ---------------------------------------------------------------------
def test_patch_embedding_converts_to_upstreams_linear_layer():
    """Upstream flattens each 14 x 14 patch position-major ('chpwq ->
    hwpqc') into a linear layer; transformers convolves."""
    from reca_toolkit.models.bagel_weights import (conv_patch_to_linear,
                                                   linear_patch_to_conv)
    conv = torch.nn.Conv2d(3, 5, 2, stride=2)
    image = torch.randn(3, 4, 4)
    patches = image.reshape(3, 2, 2, 2, 2)
    patches = torch.einsum('chpwq->hwpqc', patches).reshape(4, 12)
    linear = conv_patch_to_linear(conv.weight)
    expected = conv(image[None])[0].flatten(1).T
    torch.testing.assert_close(patches @ linear.T + conv.bias, expected)
    assert torch.equal(linear_patch_to_conv(linear, 3), conv.weight)


def test_state_dict_has_upstreams_key_names(umm):
    """The key names of BAGEL-7B-MoT's ema.safetensors, written out from
    ByteDance-Seed/Bagel modeling/bagel/{bagel,qwen2_navit,
    siglip_navit,modeling_utils}.py for layer 0 and the top level."""
    keys = set(umm.bagel_state_dict())
    layer = 'language_model.model.layers.0.'
    expected = {layer + k for k in (
        'self_attn.q_proj.weight', 'self_attn.q_proj.bias',
        'self_attn.k_proj.weight', 'self_attn.k_proj.bias',
        'self_attn.v_proj.weight', 'self_attn.v_proj.bias',
        'self_attn.o_proj.weight', 'self_attn.q_norm.weight',
        'self_attn.k_norm.weight', 'self_attn.q_proj_moe_gen.weight',
        'self_attn.q_proj_moe_gen.bias', 'self_attn.k_proj_moe_gen.weight',
        'self_attn.k_proj_moe_gen.bias', 'self_attn.v_proj_moe_gen.weight',
        'self_attn.v_proj_moe_gen.bias', 'self_attn.o_proj_moe_gen.weight',
        'self_attn.q_norm_moe_gen.weight', 'self_attn.k_norm_moe_gen.weight',
        'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight',
        'mlp_moe_gen.gate_proj.weight', 'mlp_moe_gen.up_proj.weight',
        'mlp_moe_gen.down_proj.weight', 'input_layernorm.weight',
        'input_layernorm_moe_gen.weight', 'post_attention_layernorm.weight',
        'post_attention_layernorm_moe_gen.weight')}
    expected |= {
        'language_model.model.embed_tokens.weight',
        'language_model.model.norm.weight',
        'language_model.model.norm_moe_gen.weight',
        'language_model.lm_head.weight',
        'vit_model.vision_model.embeddings.patch_embedding.weight',
        'vit_model.vision_model.embeddings.patch_embedding.bias',
        'vit_model.vision_model.embeddings.position_embedding.weight',
        'vit_model.vision_model.post_layernorm.weight',
        'vit_model.vision_model.encoder.layers.0.self_attn.q_proj.weight',
        'vit_model.vision_model.encoder.layers.0.self_attn.out_proj.weight',
        'vit_model.vision_model.encoder.layers.0.layer_norm1.weight',
        'vit_model.vision_model.encoder.layers.0.mlp.fc1.weight',
        'connector.fc1.weight', 'connector.fc2.bias', 'vae2llm.weight',
        'llm2vae.bias', 'time_embedder.mlp.0.weight',
        'time_embedder.mlp.2.bias'}
    assert expected <= keys, sorted(expected - keys)
    layer_keys = {k for k in keys if k.startswith(layer)}
    assert layer_keys == {k for k in expected if k.startswith(layer)}
    tops = {k.split('.')[0] for k in keys}
    assert tops == {'language_model', 'vit_model', 'connector', 'vae2llm',
                    'llm2vae', 'time_embedder'}
    assert umm.bagel_state_dict()[
        'vit_model.vision_model.embeddings.patch_embedding.weight'].ndim == 4


@pytest.fixture(scope='module')
def exported(umm, tmp_path_factory):
    return umm.save_pretrained(tmp_path_factory.mktemp('bagel') / 'export')


def test_export_writes_the_bagel_layout(exported):
    from safetensors.torch import load_file
    names = {p.name for p in exported.iterdir()}
    assert {'model.safetensors', 'ema.safetensors', 'ae.safetensors',
            'llm_config.json', 'vit_config.json', 'tokenizer.json',
            'tokenizer_config.json'} <= names
    model, ema = (load_file(exported / n)
                  for n in ('model.safetensors', 'ema.safetensors'))
    assert model.keys() == ema.keys()
    patch = 'vit_model.vision_model.embeddings.patch_embedding.weight'
    assert model[patch].shape == (32, 8 * 8 * 3)  # upstream's linear layer


def test_incomplete_folder_fails_naming_each_missing_part(exported,
                                                          tmp_path):
    from reca_toolkit.models.bagel_weights import check_bagel_folder
    import shutil
    folder = tmp_path / 'partial'
    shutil.copytree(exported, folder)
    for name in ('ema.safetensors', 'model.safetensors', 'ae.safetensors',
                 'vit_config.json'):
        (folder / name).unlink()
    with pytest.raises(FileNotFoundError) as error:
        check_bagel_folder(folder)
    message = str(error.value)
    for part in ('ema.safetensors', 'ae.safetensors', 'vit_config.json'):
        assert part in message
    assert 'llm_config.json' not in message


def test_foreign_checkpoint_is_refused(umm, exported, tmp_path):
    import shutil
    from safetensors.torch import save_file
    from reca_toolkit.models.bagel_weights import load_bagel_weights
    folder = tmp_path / 'foreign'
    shutil.copytree(exported, folder)
    save_file({'model.layers.0.weight': torch.zeros(2)},
              folder / 'model.safetensors')
    with pytest.raises(ValueError, match='not a BAGEL checkpoint'):
        load_bagel_weights(folder, umm.vae_config)


# sizing ----------------------------------------------------------------------
# Qwen2.5-7B(-Instruct)'s published parameter count (untied lm_head).
QWEN2_5_7B = 7_615_616_512


def test_bagel_7b_mot_is_sized_from_its_architecture():
    """Built without its folder (meta parameters): the understanding expert
    is Qwen2.5-7B plus QK-norm, the generation expert its decoder layers
    again (plus QK-norm and norm_moe_gen); SigLIP so400m cut to 26 layers,
    the connector, the FLUX VAE and the three small heads by hand sums."""
    from reca_toolkit.engine.launch import load_config
    from reca_toolkit.models.bagel_weights import BAGEL_7B_MOT
    from reca_toolkit.models.weightless import build_weightless
    from conftest import REPO
    cfg = load_config(str(REPO / 'configs/reca/bagel.py'),
                      check_resources=False)
    umm = build_weightless(cfg.model.to_dict()).umm
    count = {part: sum(p.numel() for p in module.parameters())
             for part, module in umm.parts().items()}
    llm, vit = BAGEL_7B_MOT['llm'], BAGEL_7B_MOT['vit']
    d, inner, layers = (llm['hidden_size'], llm['intermediate_size'],
                        llm['num_hidden_layers'])
    head = d // llm['num_attention_heads']
    kv = llm['num_key_value_heads'] * head
    layer = (d * d + d) + 2 * (d * kv + kv) + d * d + 3 * d * inner + 2 * d
    qwen = 2 * llm['vocab_size'] * d + layers * layer + d
    assert qwen == QWEN2_5_7B
    und = qwen + layers * 2 * head
    gen = layers * (layer + 2 * head) + d
    assert count['language_model'] == und + gen
    w, wi = vit['hidden_size'], vit['intermediate_size']
    vit_layer = 4 * (w * w + w) + 4 * w + (w * wi + wi) + (wi * w + w)
    positions = (vit['image_size'] // vit['patch_size']) ** 2
    assert count['vit'] == (vit['num_hidden_layers'] - 1) * vit_layer + (
        3 * vit['patch_size'] ** 2 * w + w) + positions * w + 2 * w
    assert count['connector'] == (w * d + d) + (d * d + d)
    assert count['vae'] == 83_819_683  # the FLUX VAE
    token = 16 * 2 * 2
    heads = (token * d + d) + (d * token + token) + (
        256 * d + d) + (d * d + d)
    assert count['vae2llm'] + count['llm2vae'] + count[
        'time_embedder'] == heads
    assert umm.active_parameters() == dict(understanding=und,
                                           generation=gen + heads)
    assert sum(count.values()) == 14_658_838_147


# sharded training ------------------------------------------------------------
def fsdp_options():
    """configs/reca/bagel_fsdp.py's runner, strategy and weights dtype,
    for the demo."""
    from mmengine.config import Config
    from conftest import REPO
    cfg = Config.fromfile(str(REPO / 'configs/reca/bagel_fsdp.py'))
    return {'runner_type': cfg.runner_type,
            'strategy': cfg.strategy.to_dict(),
            'model.umm.weights_dtype': cfg.model.umm.weights_dtype}


def _train_demo(rank, world, port, out, options):
    import os
    from mmengine.hooks import Hook
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), HF_HUB_OFFLINE='1')
    from conftest import REPO
    from reca_toolkit.engine.launch import (build_runner, distributed,
                                            load_config)

    class Losses(Hook):

        def __init__(self):
            self.steps = []

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            self.steps.append(dict(
                loss=float(outputs['loss_recon'].detach()),
                grad_norm=runner.message_hub.get_scalar(
                    'train/grad_norm').current()))

    cfg = load_config(str(REPO / 'configs/reca/bagel_demo.py'), dict(
        options, **{'train_cfg.max_iters': 3, 'custom_hooks': [],
                    'default_hooks.checkpoint': None,
                    'param_scheduler': [dict(
                        type='LinearLR', start_factor=0.1, by_epoch=False,
                        begin=0, end=3)],
                    'train_dataloader.batch_size': 4 // world}),
        str(out / 'work'))
    cfg.experiment_name = f'{out.name}_{rank}'
    # As tools/train.py: the process group is torn down when the run ends.
    with distributed(cfg, 'pytorch' if world > 1 else 'none'):
        runner = build_runner(cfg)
        hook = Losses()
        runner.register_hook(hook)
        runner.train()
    (out / f'steps_{rank}.json').write_text(json.dumps(hook.steps))


def test_fsdp_on_two_processes_trains_as_one_process(tmp_path,
                                                     monkeypatch):
    """The demo sharded over 2 CPU processes as configs/reca/bagel_fsdp.py
    shards (one FSDP unit per MoT layer, the frozen ViT, connector and VAE
    not sharded, the understanding expert sharded with no gradient) logs
    the losses and global gradient norms of one process on the whole
    batch. A bfloat16 understanding expert beside the float32 generation
    expert cannot be flattened into one unit: the config keeps float32."""
    import torch.multiprocessing as mp
    from test_distributed import free_port
    for name in ('fsdp', 'single'):
        (tmp_path / name).mkdir()
    options = fsdp_options()
    assert options['model.umm.weights_dtype'] == 'float32'
    mp.start_processes(_train_demo, nprocs=2, start_method='spawn',
                       args=(2, free_port(), tmp_path / 'fsdp', options))
    # The single process runs here; the variables it sets are put back.
    for key in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'LOCAL_RANK',
                'WORLD_SIZE'):
        monkeypatch.setenv(key, '')
    _train_demo(0, 1, free_port(), tmp_path / 'single', {})
    runs = {name: json.loads((tmp_path / name / 'steps_0.json').read_text())
            for name in ('fsdp', 'single')}
    assert len(runs['fsdp']) == len(runs['single']) == 3
    for sharded, single in zip(runs['fsdp'], runs['single']):
        assert sharded['loss'] == pytest.approx(single['loss'], abs=1e-5)
        assert sharded['grad_norm'] == pytest.approx(single['grad_norm'],
                                                     rel=1e-4)
    assert runs['single'][0]['loss'] != runs['single'][-1]['loss']


def test_bfl_autoencoder_converts_through_diffusers(umm, exported, tmp_path):
    """An ae.safetensors in BFL's (LDM) layout loads through diffusers'
    convert_ldm_vae_checkpoint into the same AutoencoderKL weights."""
    import shutil
    from safetensors.torch import save_file
    from test_vae_weights import to_ldm
    from reca_toolkit.models.bagel_weights import load_bagel_weights
    folder = tmp_path / 'bfl'
    shutil.copytree(exported, folder)
    vae = umm.gen_tokenizer.vae.state_dict()
    levels = len(umm.vae_config['block_out_channels'])
    ldm = to_ldm(vae, levels)
    assert any(k.startswith('encoder.down.0.block.') for k in ldm)
    save_file({k: v.contiguous() for k, v in ldm.items()},
              folder / 'ae.safetensors')
    _, loaded = load_bagel_weights(folder, umm.vae_config)
    assert loaded.keys() == vae.keys()
    for key, value in vae.items():
        assert torch.equal(loaded[key], value), key


def test_demo_logs_reconstruction_prompt_and_edit_grids(tmp_path):
    """configs/reca/bagel_demo.py, one iteration: the grids of its
    SampleGridHook, edits included (RecAModel.edit with the fixed images'
    generation views as sources)."""
    from conftest import REPO
    from reca_toolkit.engine.launch import build_runner, load_config
    cfg = load_config(str(REPO / 'configs/reca/bagel_demo.py'), {
        'train_cfg.max_iters': 1, 'default_hooks.checkpoint': None},
        str(tmp_path))
    build_runner(cfg).train()
    grids = {p.stem for p in tmp_path.glob('*/vis_data/vis_image/*.png')}
    assert grids == {'reconstruction_1', 'prompts_1', 'edits_1'}


def test_imgedit_runs_on_bagel_through_tools_test_keeping_aspect(
        tmp_path, monkeypatch):
    """tools/test.py with the BAGEL editing path on an ImgEdit-layout folder
    of a wide and a tall source (AspectViews as the BAGEL preset, at tiny
    bounds): each edit keeps its source's aspect, the judge sees source and
    edit, and the metric scores both."""
    import threading
    from http.server import HTTPServer
    from conftest import REPO
    from test_eval_judges import Handler
    from test_train_e2e import run_tool
    images = tmp_path / 'images'
    images.mkdir()
    Image.new('RGB', (48, 24), (200, 30, 30)).save(images / 'wide.png')
    Image.new('RGB', (24, 48), (30, 30, 200)).save(images / 'tall.png')
    (tmp_path / 'singleturn.json').write_text(json.dumps({
        '1': dict(id='wide.png', prompt='Make it green.', edit_type='adjust'),
        '2': dict(id='tall.png', prompt='Add a circle.', edit_type='add')}))
    (tmp_path / 'judge_prompt.json').write_text(json.dumps({
        'adjust': 'Rate: <edit_prompt>', 'add': 'Rate: <edit_prompt>'}))
    # The loopback judge rates every edit A: 4, B: 3, C: 5.
    Handler.requests, Handler.statuses = [], []
    monkeypatch.setattr(Handler, 'reply', 'A: 4\nB: 3\nC: 5')
    httpd = HTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    config = tmp_path / 'bagel_imgedit.py'
    config.write_text(f'''_base_ = [
    '{REPO}/configs/_base_/models/bagel_tiny.py',
    '{REPO}/configs/_base_/datasets/imgedit.py',
    '{REPO}/configs/_base_/default_runtime.py',
]
test_dataloader = dict(num_workers=0, dataset=dict(
    annotation='{tmp_path}/singleturn.json', image_root='{images}',
    pipeline=[dict(type='LoadImage'),
              dict(type='AspectViews', und=(32, 16, 8), gen=(32, 16, 4))]))
test_evaluator = dict(
    judge_prompts='{tmp_path}/judge_prompt.json', out_dir='{tmp_path}/out',
    judge=dict(base_url='http://127.0.0.1:{httpd.server_port}/v1',
               api_key_env='TEST_JUDGE_KEY', backoff=0))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=2)]
''')
    monkeypatch.setenv('TEST_JUDGE_KEY', 'sk-test')
    try:
        proc = run_tool('tools/test.py', config, '--work-dir',
                        tmp_path / 'work')
    finally:
        httpd.shutdown()
    shown = [Image.open(io.BytesIO(base64.b64decode(
        part['image_url']['url'].split(',')[1]))).size
        for _, _, body in Handler.requests
        for part in body['messages'][-1]['content']
        if part['type'] == 'image_url']
    # 48 x 24 -> long side 32 (multiples of 4: 32 x 16), likewise tall.
    edits = {p.stem: Image.open(p).size for p in (tmp_path / 'out').glob(
        '*.png')}
    assert edits == {'1': (32, 16), '2': (16, 32)}
    assert sorted(shown) == sorted([(48, 24), (32, 16), (24, 48),
                                           (16, 32)])
    assert 'imgedit/overall: 4.0000' in proc.stdout + proc.stderr
    assert list((tmp_path / 'work').glob('*/vis_data/vis_image/*.png'))
