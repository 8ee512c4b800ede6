"""Show-o: sequences, omni-attention and losses against upstream's layouts
written out by hand, the two RecA variants, the gradient quirk and its fix,
the weights folder.

The reference sequences below follow showlab/Show-o and the RecA
repository's ``Show-o/training/prompting_utils.py`` token by token: upstream
right-pads the text block and builds its attention masks from token ids; the
adapter builds ``Condition`` rows with ``blocks``/``visible``. Equal losses
mean equal layouts, positions and masks.
"""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from conftest import REPO, random_images, to_float

TINY = 'configs/_base_/models/showo_tiny.py'
MIN = torch.finfo(torch.float32).min


def build(seed=0, **umm):
    from reca_toolkit.registry import MODELS
    cfg = copy.deepcopy(Config.fromfile(str(REPO / TINY)).model.to_dict())
    cfg['umm'].update(umm)
    torch.manual_seed(seed)
    return MODELS.build(cfg)


@pytest.fixture(scope='module', params=['eager', 'sdpa'])
def clip_umm(request):
    return build(attn_implementation=request.param).umm.eval()


@pytest.fixture(scope='module')
def vq_umm():
    return build(understanding='vq', frozen=['magvit'],
                 attn_implementation='eager').umm.eval()


@pytest.fixture(scope='module')
def pixels():
    return to_float(random_images(2, 32, seed=0))


def additive(allowed):
    """Upstream's inverted mask: 0 where allowed, the dtype's min else."""
    return torch.zeros(allowed.shape).masked_fill(~allowed, MIN)[:, None]


def upstream_loss(umm, ids, image_slots, image_embeds, allowed, codes,
                  masked):
    """CE of the Hugging Face Phi over a hand-built upstream sequence:
    ``ids`` with ``image_embeds`` at ``image_slots`` (a start index), the
    code positions the last ``N + 1`` but one (``logits[:, -(N+1):-1]``)."""
    embeds = umm.hf_llm.get_input_embeddings()(torch.tensor([ids]))
    if image_embeds is not None:
        embeds = torch.cat([embeds[:, :image_slots], image_embeds[None],
                            embeds[:, image_slots:]], dim=1)
    logits = umm.hf_llm(inputs_embeds=embeds,
                        attention_mask=additive(allowed[None])).logits
    n = codes.shape[0]
    logits = logits[0, -(n + 1):-1]
    return F.cross_entropy(logits[masked], codes[masked] + umm.code_offset)


def text_ids(umm, text):
    return [umm.ids['bos']] + umm._text(text) + [umm.ids['eos']]


def masked_inputs(umm, codes, masked):
    return torch.where(masked, umm.ids['mask'],
                       codes + umm.code_offset).tolist()


def test_clip_reconstruction_loss_equals_upstreams_sequence(clip_umm,
                                                            pixels):
    """``<|mmu|><|soi|>[CLIP]<|eoi|><bos>USER: \\n {p} ASSISTANT:<eos>
    [PAD..]<|soi|>[codes]<|eoi|>``, mask of
    ``create_attention_mask_for_mmu_vit_recon``: causal, CLIP columns seen
    by all, the codes bidirectional, pad columns hidden."""
    umm, instruction = clip_umm, 'Describe the image.'
    with torch.no_grad():
        embeds = umm.encode_understanding(pixels[:1])
        codes = umm.gen_tokenizer.encode(pixels[:1])[0]
        draws = umm.generator.draw([7], codes.shape[0])
        ours = umm.generation_loss(umm.image_condition(embeds, [instruction]),
                                   pixels[:1], draws=[7])['loss']
        ids = umm.ids
        block = [ids['<|mmu|>'], ids['<|soi|>'], ids['<|eoi|>']] + text_ids(
            umm, f'USER: \n {instruction} ASSISTANT:')
        block += [ids['[PAD]']] * (umm.max_text_length - len(block))
        masked = draws.mask[0]
        seq = block + [ids['<|soi|>']] + masked_inputs(umm, codes, masked) \
            + [ids['<|eoi|>']]
        n_clip, n = embeds.shape[1], codes.shape[0]
        full_ids = seq[:2] + [-1] * n_clip + seq[2:]
        length = len(full_ids)
        allowed = torch.ones(length, length, dtype=torch.bool).tril()
        allowed[:, 2:2 + n_clip] = True
        allowed[-1 - n:-1, -1 - n:-1] = True
        pads = torch.tensor(full_ids) == ids['[PAD]']
        allowed[:, pads] = False
        theirs = upstream_loss(umm, seq, 2, embeds[0], allowed, codes,
                               masked)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_text_to_image_loss_equals_upstreams_sequence(clip_umm, pixels):
    """``[PAD..]<|t2i|><bos>{p}<eos><|soi|>[codes]<|eoi|>``, mask of
    ``create_attention_mask_predict_next(rm_pad_in_image=True)``: text
    causal, the image block ``<|soi|>``..``<|eoi|>`` sees every real
    position."""
    umm = clip_umm
    with torch.no_grad():
        codes = umm.gen_tokenizer.encode(pixels[1:])[0]
        draws = umm.generator.draw([3], codes.shape[0])
        ours = umm.generation_loss(umm.text_condition(['a red circle']),
                                   pixels[1:], draws=[3])['loss']
        ids = umm.ids
        head = [ids['<|t2i|>']] + text_ids(umm, 'a red circle')
        block = [ids['[PAD]']] * (umm.max_text_length + 1 - len(head)) + head
        masked = draws.mask[0]
        seq = block + [ids['<|soi|>']] + masked_inputs(umm, codes, masked) \
            + [ids['<|eoi|>']]
        length, image = len(seq), len(block)
        allowed = torch.ones(length, length, dtype=torch.bool).tril()
        allowed[image:, :] = True
        allowed[:, torch.tensor(seq) == ids['[PAD]']] = False
        theirs = upstream_loss(umm, seq, None, None, allowed, codes, masked)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_vq_reconstruction_loss_equals_upstreams_sequence(vq_umm, pixels):
    """``[PAD..]<|mmu|><|soi|>[condition codes]<|eoi|><bos>USER: \\n {p}
    ASSISTANT:<eos><|soi|>[codes]<|eoi|>``, mask of
    ``create_attention_mask_predict_next_recon``: each image block
    bidirectional, the condition block blind to what follows it."""
    umm, instruction = vq_umm, 'Describe the image.'
    with torch.no_grad():
        embeds = umm.encode_understanding(pixels[:1])
        condition_codes = umm.gen_tokenizer.encode(F.interpolate(
            pixels[:1], size=(16, 16), mode='bilinear',
            align_corners=False))[0]
        assert embeds.shape[1] == len(condition_codes) == 16
        codes = umm.gen_tokenizer.encode(pixels[:1])[0]
        draws = umm.generator.draw([5], codes.shape[0])
        ours = umm.generation_loss(umm.image_condition(embeds, [instruction]),
                                   pixels[:1], draws=[5])['loss']
        ids = umm.ids
        sentence = text_ids(umm, f'USER: \n {instruction} ASSISTANT:')
        pads = [ids['[PAD]']] * (umm.max_text_length - len(sentence))
        given = (condition_codes + umm.code_offset).tolist()
        masked = draws.mask[0]
        seq = pads + [ids['<|mmu|>'], ids['<|soi|>']] + given + \
            [ids['<|eoi|>']] + sentence + [ids['<|soi|>']] + \
            masked_inputs(umm, codes, masked) + [ids['<|eoi|>']]
        length = len(seq)
        first_soi = len(pads) + 1
        first_eoi = first_soi + len(given) + 1
        second_soi = first_eoi + len(sentence) + 1
        allowed = torch.ones(length, length, dtype=torch.bool).tril()
        allowed[first_soi:first_eoi + 1, first_soi:first_eoi + 1] = True
        allowed[second_soi:, :] = True
        allowed[:, torch.tensor(seq) == ids['[PAD]']] = False
        theirs = upstream_loss(umm, seq, None, None, allowed, codes, masked)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def dependencies(umm, condition, tail, tail_blocks, query):
    """Which input positions the backbone's output at ``query`` depends on
    (nonzero gradient), over the condition followed by ``tail``."""
    from reca_toolkit.models.umm.base import Condition, run_backbone
    embeds = torch.cat([condition.embeds, tail], dim=1).detach()
    embeds.requires_grad_(True)
    rows = Condition(embeds[:, :condition.embeds.shape[1]], condition.mask,
                     condition.positions, condition.blocks, condition.visible)
    hidden = run_backbone(umm.llm, rows, embeds[:, rows.embeds.shape[1]:],
                          tail_blocks=tail_blocks,
                          use_cache=False).last_hidden_state
    # A random direction: the sum of a layer-normed state is constant.
    weights = torch.randn(hidden.shape[-1],
                          generator=torch.Generator().manual_seed(0))
    (hidden[0, query] * weights).sum().backward()
    return set((embeds.grad[0].abs().sum(-1) > 0).nonzero()[:, 0].tolist())


def test_omni_attention_which_positions_each_output_depends_on(clip_umm,
                                                               pixels):
    """The CLIP reconstruction prompt plus codes and ``<|eoi|>``: the task
    token sees the CLIP block after it; text is causal; codes see each
    other, later ones too, but not ``<|eoi|>``; nothing sees padding."""
    umm = clip_umm
    with torch.no_grad():
        embeds = umm.encode_understanding(pixels[:1])
        condition = umm.image_condition(embeds, ['Describe the image.'])
    n_clip, length = embeds.shape[1], condition.embeds.shape[1]
    n = umm.num_image_tokens
    tail = umm.llm.get_input_embeddings()(
        torch.full((1, n + 1), umm.ids['mask']))
    blocks = torch.tensor([1] * n + [0])
    real = set(condition.mask[0].nonzero()[:, 0].tolist())
    pads = set(range(length)) - real
    clip = set(range(2, 2 + n_clip))
    assert pads and len(clip) == n_clip
    codes = set(range(length, length + n))
    eoi = length + n

    # <|mmu|> (position 0) sees the CLIP block after it, and, two layers
    # deep, what the CLIP block sees: <|mmu|><|soi|>; no text, no code.
    assert dependencies(umm, condition, tail, blocks, 0) == {0, 1} | clip
    # The first text token after the CLIP block's <|eoi|>: causal.
    text = 2 + n_clip + 1
    assert dependencies(umm, condition, tail, blocks, text) == \
        set(range(text + 1))
    # A code: every real prompt position and every code, not <|eoi|>.
    first_code = dependencies(umm, condition, tail, blocks, length)
    assert first_code == real | codes
    # <|eoi|> sees everything real.
    assert dependencies(umm, condition, tail, blocks, eoi) == \
        real | codes | {eoi}


def test_image_to_text_loss_equals_upstreams_sequence(clip_umm, pixels):
    """``<|mmu|>{system}<|soi|>[CLIP of the CLIP-normalised image]<|eoi|>
    USER: {q} ASSISTANT: {a}<|endoftext|>``, mask of
    ``create_attention_mask_for_mmu_vit``; the answer and its end scored,
    next-token shifted."""
    umm = clip_umm
    turns = [('What is in the image?', 'Shapes.')]
    with torch.no_grad():
        ours = umm.understanding_loss(pixels[:1], [turns])['loss']
        clip_pixels = F.interpolate(pixels[:1], size=(32, 32),
                                    mode='bilinear', align_corners=False)
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
        clip_pixels = ((clip_pixels + 1) / 2 - mean.view(1, 3, 1, 1)) / \
            std.view(1, 3, 1, 1)
        features = umm.vision(pixel_values=clip_pixels,
                              output_hidden_states=True).hidden_states[-2]
        image = umm.mm_projector(features[:, 1:])[0]
        ids = umm.ids
        system = umm._text(umm.system_prompt)
        prompt = umm._text('USER: What is in the image? ASSISTANT:')
        answer = umm._text(' Shapes.') + [ids['eos']]
        head = [ids['<|mmu|>']] + system + [ids['<|soi|>']]
        seq = head + [ids['<|eoi|>']] + prompt + answer
        labels = [-100] * (len(head) + len(image) + 1 + len(prompt)) + answer
        embeds = umm.hf_llm.get_input_embeddings()(torch.tensor([seq]))
        embeds = torch.cat([embeds[:, :len(head)], image[None],
                            embeds[:, len(head):]], dim=1)
        length = embeds.shape[1]
        allowed = torch.ones(length, length, dtype=torch.bool).tril()
        allowed[:, len(head):len(head) + len(image)] = True
        logits = umm.hf_llm(inputs_embeds=embeds,
                            attention_mask=additive(allowed[None])).logits
        theirs = F.cross_entropy(logits[0, :-1], torch.tensor(labels[1:]),
                                 ignore_index=-100)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def recon_gradients(recon_grad, pixels):
    model = build(recon_grad=recon_grad)
    umm = model.umm
    batch = dict(und_pixels=pixels, gen_pixels=pixels,
                 draw=torch.arange(2))
    model.objectives['recon'].loss(umm, batch)['loss'].backward()
    grad = lambda m: sum(  # noqa: E731
        float(p.grad.abs().sum()) for p in m.parameters()
        if p.grad is not None)
    return dict(projector=grad(umm.mm_projector),
                embedding=grad(umm.llm.get_input_embeddings()),
                layers=grad(umm.llm.layers), head=grad(umm.lm_head))


def test_recon_gradient_parity_quirk_and_its_fix(pixels):
    """Parity: upstream builds the CLIP reconstruction inputs under
    no_grad, so only the transformer blocks and the output layer learn from
    reconstruction. ``recon_grad='full'`` reaches the projector and the
    embedding table too."""
    parity = recon_gradients('parity', pixels)
    assert parity['projector'] == 0 and parity['embedding'] == 0
    assert parity['layers'] > 0 and parity['head'] > 0
    full = recon_gradients('full', pixels)
    assert full['projector'] > 0 and full['embedding'] > 0
    assert full['layers'] > 0


def test_vq_condition_downscaled_or_blurred(vq_umm, pixels):
    """The VQ variant's condition: codes of the view downscaled x2 (16 of
    them for 32 px at 4 px per code), or, with ``vq_resize_back`` ("blur8"
    when the factor is 8), downscaled and resized back: as many codes as
    the target, of a blurred image."""
    umm = vq_umm
    embed = umm.llm.get_input_embeddings()
    with torch.no_grad():
        small = F.interpolate(pixels, size=(16, 16), mode='bilinear',
                              align_corners=False)
        expected = embed(umm.gen_tokenizer.encode(small) + umm.code_offset)
        torch.testing.assert_close(umm.encode_understanding(pixels), expected)
        umm.vq_downscale, umm.vq_resize_back = 8, True
        try:
            blurred = F.interpolate(F.interpolate(
                pixels, size=(4, 4), mode='bilinear', align_corners=False),
                size=(32, 32), mode='bilinear', align_corners=False)
            codes = umm.gen_tokenizer.encode(blurred)
            got = umm.encode_understanding(pixels)
        finally:
            umm.vq_downscale, umm.vq_resize_back = 2, False
    assert got.shape[1] == 64
    torch.testing.assert_close(got, embed(codes + umm.code_offset))


def test_vocabulary_layout_is_checked():
    with pytest.raises(ValueError, match=r'512 text tokens \+ 64 image codes'
                       r' \+ 1 mask token = 577.*vocab_size=600'):
        build(config=dict(vocab_size=600, hidden_size=64,
                          intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4))


def test_bad_options_fail_naming_the_valid_ones():
    with pytest.raises(ValueError, match="understanding='siglip'"):
        build(understanding='siglip')
    with pytest.raises(ValueError, match="recon_grad='none'"):
        build(recon_grad='none')


# weights folder ------------------------------------------------------------
@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    model = build(seed=2)
    folder = model.umm.save_pretrained(
        tmp_path_factory.mktemp('showo') / 'export')
    return model, folder


def reload(folder, **umm):
    cfg = copy.deepcopy(Config.fromfile(str(REPO / TINY)).model.to_dict())
    for key in ('config', 'vision_config', 'tokenizer', 'gen_tokenizer'):
        cfg['umm'].pop(key)
    cfg['umm'].update(pretrained=str(folder), **umm)
    from reca_toolkit.registry import MODELS
    return MODELS.build(cfg)


def test_export_has_showos_layout(exported):
    _, folder = exported
    from safetensors.torch import load_file
    keys = load_file(str(folder / 'showo' / 'model.safetensors'))
    assert 'showo.model.layers.0.self_attn.q_proj.weight' in keys
    assert 'showo.lm_head.weight' in keys and 'mm_projector.0.weight' in keys
    assert all(k.startswith(('showo.', 'mm_projector.')) for k in keys)
    config = json.loads((folder / 'showo' / 'config.json').read_text())
    assert config['w_clip_vit'] is True and config['vocab_size'] == 577
    assert config['num_vq_tokens'] == 64
    for part in ('phi-1_5/config.json', 'magvitv2/config.json',
                 'clip/config.json'):
        assert (folder / part).is_file(), part


def test_pickled_showo_weights_load_safely(exported, tmp_path, pixels):
    """A Show-o folder with ``pytorch_model.bin`` (what Show-o's
    ModelMixin writes) loads through ``torch.load(weights_only=True)``."""
    import shutil

    from safetensors.torch import load_file
    model, folder = exported
    copy_dir = tmp_path / 'bin'
    shutil.copytree(folder, copy_dir)
    weights = copy_dir / 'showo' / 'model.safetensors'
    torch.save(load_file(str(weights)), copy_dir / 'showo' /
               'pytorch_model.bin')
    weights.unlink()
    reloaded = reload(copy_dir)
    batch = dict(recon=dict(und_pixels=pixels, gen_pixels=pixels,
                            draw=torch.arange(2)))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.loss(batch)['loss_recon'],
                                   model.loss(batch)['loss_recon'])


def test_missing_parts_fail_before_building_naming_each(tmp_path):
    from reca_toolkit.models.umm.showo import ShowoUMM
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        ShowoUMM.validate_config(dict(pretrained=str(empty)))
    for part in ('showo/config.json', 'phi-1_5/config.json',
                 'magvitv2/config.json', 'clip/config.json',
                 'phi-1_5/tokenizer.json'):
        assert part in str(error.value), part
    with pytest.raises(FileNotFoundError, match='does not exist'):
        ShowoUMM.validate_config(dict(pretrained=str(tmp_path / 'nowhere')))


def test_incomplete_or_mismatched_folders_are_refused(exported, tmp_path):
    import shutil
    from reca_toolkit.models.umm.showo import ShowoUMM
    _, folder = exported
    broken = tmp_path / 'broken'
    shutil.copytree(folder, broken)
    (broken / 'showo' / 'model.safetensors').unlink()
    for f in (broken / 'magvitv2').glob('*.safetensors'):
        f.unlink()
    with pytest.raises(FileNotFoundError) as error:
        ShowoUMM.validate_config(dict(pretrained=str(broken)))
    assert 'showo/ weights' in str(error.value)
    assert 'magvitv2/ weights' in str(error.value)
    # A CLIP Show-o folder is not the VQ variant's.
    with pytest.raises(ValueError, match='w_clip_vit=True'):
        ShowoUMM.validate_config(dict(pretrained=str(folder),
                                      understanding='vq'))


def test_weights_outside_showos_modules_are_refused(exported, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file
    _, folder = exported
    extra = tmp_path / 'extra'
    shutil.copytree(folder, extra)
    weights = extra / 'showo' / 'model.safetensors'
    state = load_file(str(weights))
    state['vision_tower.proj.weight'] = torch.zeros(2, 2)
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"outside \['mm_projector', "
                       r"'showo'\]: \['vision_tower.proj.weight'\]"):
        reload(extra)


def phi_params(vocab_size, hidden_size, intermediate_size, num_hidden_layers,
               **unused):
    """Phi: biased q/k/v/dense and fc1/fc2, two LayerNorm vectors per
    layer, a final LayerNorm, a biased untied output layer."""
    d, f = hidden_size, intermediate_size
    layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * d
    return vocab_size * d + num_hidden_layers * layer + 2 * d + \
        vocab_size * d + vocab_size


def test_weightless_showo_512_has_the_published_parameter_counts():
    """Built without its folder (the sizing tools): Phi-1.5 (1,418,270,720
    published, at its 51200-token vocabulary) with Show-o's 58498 tokens,
    CLIP-ViT-L/14-336's vision tower, the projector and MAGVIT-v2."""
    from reca_toolkit.engine.launch import load_config
    from reca_toolkit.models.showo_weights import SHOWO_ARCHITECTURES
    from reca_toolkit.models.weightless import build_weightless
    llm = SHOWO_ARCHITECTURES['llm']
    assert phi_params(**llm) == 1_418_270_720
    cfg = load_config(str(REPO / 'configs/reca/showo_512.py'),
                      check_resources=False)
    umm = build_weightless(cfg.model.to_dict()).umm
    count = {part: sum(p.numel() for p in module.parameters())
             for part, module in umm.parts().items()}
    assert count['llm'] + count['lm_head'] == phi_params(
        **dict(llm, vocab_size=58498)) == 1_448_170_626
    assert count['vision'] == 303_507_456
    assert count['mm_projector'] == 1024 * 2048 + 2048 + 2048 * 2048 + 2048
    assert count['magvit'] == 95_387_004
    assert umm.code_offset == 50305 and umm.ids['mask'] == 58497
    assert umm.num_image_tokens == 1024


def test_demo_config_composes_the_tiny_model_and_validates_on_shapes():
    from reca_toolkit.engine.config_check import check_config
    cfg = Config.fromfile(str(REPO / 'configs/reca/showo_demo.py'))
    check_config(cfg)
    assert cfg.model.umm.type == 'ShowoUMM' and cfg.model.umm.image_size == 32
    assert cfg.train_cfg.max_iters == 300 and cfg.train_cfg.val_interval == 100
    assert cfg.val_dataloader.dataset.type == 'GenEvalShapesPrompts'
    assert cfg.model.objectives.recon.generic_prob == 0.0
    views = cfg.train_dataloader.dataset.sources.recon.pipeline[1]
    assert views.und_size == views.gen_size == 32
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'SampleGridHook' in hooks and 'EvalSampleGridHook' in hooks
