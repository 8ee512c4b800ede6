"""The Janus-Pro adapter on tiny random configs of the real transformers
classes: VQ targets, chat templates, losses, freezing, sampling and export."""
import math
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import build_tiny_model, random_images, to_float

from reca_toolkit.models.encoders.janus import l2_normalized_codes
from reca_toolkit.models import losses

N = 16  # understanding embeddings and VQ codes of the tiny 64 px model
BOS = '<｜begin▁of▁sentence｜>'
EOS = '<｜end▁of▁sentence｜>'
PARTS = ('vision_model', 'aligner', 'vqmodel', 'generation_embeddings',
         'generation_aligner', 'generation_head', 'language_model', 'lm_head')


@pytest.fixture
def umm():
    return build_tiny_model().umm


def tokens(umm, text):
    """Token ids the way JanusProcessor gets them: the whole string at once,
    special tokens written inline."""
    return umm.tokenizer(text, add_special_tokens=False)['input_ids']


def embed(umm, ids):
    return umm.language_model.get_input_embeddings()(torch.tensor(ids))


def reference_codes(latents, codebook):
    """The original Janus / LlamaGen VectorQuantizer, codebook_l2_norm=True."""
    z = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    z = F.normalize(z, dim=-1)
    e = F.normalize(codebook, dim=-1)
    d = (z ** 2).sum(1, keepdim=True) + (e ** 2).sum(1) - 2 * z @ e.T
    return d.argmin(1).view(latents.shape[0], -1)


def uneven_codebook(num=512, dim=8, seed=0):
    """Rows scaled by 0.1..10: the raw and the normalised nearest neighbour
    then disagree, which equal-norm codebooks would hide."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.empty(num, 1).uniform_(math.log(0.1), math.log(10),
                                         generator=g).exp()
    return torch.randn(num, dim, generator=g) * scale


def scramble(umm, std=0.2, seed=0):
    """Larger random weights on the generation path. At the default 0.02
    init greedy decoding repeats one code, which would hide cache, padding
    or guidance bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (umm.generator, umm.language_model):
            for p in module.parameters():
                if p.dim() > 1:
                    p.normal_(std=std, generator=g)


# VQ code rule ----------------------------------------------------------------
def test_l2_normalized_codes_follow_the_original_quantizer():
    codebook = uneven_codebook()
    latents = torch.randn(2, 8, 4, 4,
                          generator=torch.Generator().manual_seed(1))
    reference = reference_codes(latents, codebook)

    assert torch.equal(l2_normalized_codes(latents, codebook), reference)

    from transformers import JanusVQVAEConfig
    from transformers.models.janus.modeling_janus import \
        JanusVQVAEVectorQuantizer
    quantizer = JanusVQVAEVectorQuantizer(
        JanusVQVAEConfig(embed_dim=8, num_embeddings=512))
    quantizer.embedding.weight.data.copy_(codebook)
    hf_codes = quantizer(latents)[2].view(2, -1)
    assert (hf_codes != reference).float().mean() > 0.3


def test_vq_tokenizer_encodes_by_the_original_rule(umm):
    vq = umm.gen_tokenizer.vqmodel
    vq.quantize.embedding.weight.data.copy_(uneven_codebook())
    pixels = to_float(random_images(4))
    with torch.no_grad():
        reference = reference_codes(vq.quant_conv(vq.encoder(pixels)),
                                    vq.quantize.embedding.weight)
        hf_codes = vq.encode(pixels).image_tokens.view(4, -1)

    codes = umm.gen_tokenizer.encode(pixels)
    assert codes.shape == (4, N)
    assert torch.equal(codes, reference)
    assert (hf_codes != reference).float().mean() > 0.3


# prompt templates ------------------------------------------------------------
def check_left_padded(umm, condition, rows, image_embeds=None):
    """Each row right-aligned with mask 0 before it; embeddings equal the
    token embeddings, image slots hold ``image_embeds``; content is every
    real position but BOS and the final <begin_of_image>."""
    length = condition.embeds.shape[1]
    assert length == max(len(r) for r in rows)
    for i, row in enumerate(rows):
        pad = length - len(row)
        assert condition.mask[i].tolist() == [0] * pad + [1] * len(row)
        expected = embed(umm, row)
        if image_embeds is not None:
            slots = torch.tensor(row) == umm.ids['image']
            assert slots.sum() == image_embeds.shape[1]
            expected[slots] = image_embeds[i]
        assert torch.equal(condition.embeds[i, pad:], expected)
        content = [False] * (pad + 1) + [True] * (len(row) - 2) + [False]
        assert condition.extras['content'][i].tolist() == content


def test_image_condition_layout(umm):
    instructions = ['Describe the image in detail.',
                    'What is in this picture? Tell me about the shapes.']
    und_embeds = torch.randn(2, N, 64)
    condition = umm.image_condition(und_embeds, instructions)

    rows = [tokens(umm, f'{BOS}<|User|>: <begin_of_image>'
                   + '<image_placeholder>' * N
                   + f'<end_of_image>\n{text}\n\n<|Assistant|>:'
                   '<begin_of_image>') for text in instructions]
    assert len(rows[0]) != len(rows[1])
    ids = umm.ids
    for row in rows:
        assert row[0] == ids['bos'] and row[-1] == ids['boi']
        assert row.count(ids['image']) == N
    check_left_padded(umm, condition, rows, und_embeds)


def test_text_condition_layout(umm):
    prompts = ['a red circle', 'two blue squares left of a green triangle']
    condition = umm.text_condition(prompts)

    rows = [tokens(umm, f'{BOS}<|User|>: {text}\n\n<|Assistant|>:'
                   '<begin_of_image>') for text in prompts]
    assert len(rows[0]) != len(rows[1])
    check_left_padded(umm, condition, rows)


# generation loss -------------------------------------------------------------
def capture(module, store):
    """Append ``(first positional input, output)`` of each call."""
    def hook(mod, args, output):
        store.append((args[0] if args else None, output))
    return module.register_forward_hook(hook)


def test_only_code_positions_reach_the_generation_head(umm):
    condition = umm.text_condition(
        ['a red circle', 'two blue squares left of a green triangle'])
    pixels = to_float(random_images(2))
    head_calls, llm_calls = [], []
    capture(umm.generator.head, head_calls)
    capture(umm.language_model, llm_calls)

    loss = umm.generation_loss(condition, pixels)['loss']

    head_in = head_calls[0][0]
    hidden = llm_calls[0][1].last_hidden_state
    start = condition.embeds.shape[1] - 1  # the final <begin_of_image>
    assert head_in.shape == (2, N, 64)
    assert torch.equal(head_in, hidden[:, start:start + N])
    codes = umm.gen_tokenizer.encode(pixels)
    manual = F.cross_entropy(umm.generator.head(head_in).flatten(0, 1),
                             codes.flatten())
    assert torch.allclose(loss, manual, atol=1e-6)
    assert abs(loss.item() - math.log(512)) < 0.15


def test_left_padding_does_not_change_generation_states(umm):
    prompts = ['a red circle', 'two blue squares left of a green triangle']
    pixels = to_float(random_images(2))
    head_calls = []
    capture(umm.generator.head, head_calls)

    umm.generation_loss(umm.text_condition(prompts), pixels)
    umm.generation_loss(umm.text_condition(prompts[:1]), pixels[:1])

    batched, alone = head_calls[0][0][0], head_calls[1][0][0]
    assert torch.allclose(batched, alone, atol=1e-5)


def test_teacher_forcing_is_shifted_by_one(umm):
    """The state predicting code j has seen codes < j only."""
    condition = umm.text_condition(['a red circle'])
    codes = umm.gen_tokenizer.encode(to_float(random_images(1)))
    changed = codes.clone()
    changed[0, 5] = (codes[0, 5] + 1) % 512
    head_calls = []
    capture(umm.generator.head, head_calls)

    loss = umm.generator.loss(umm.language_model, condition, codes)['loss']
    loss_changed = umm.generator.loss(umm.language_model, condition,
                                      changed)['loss']

    assert loss != loss_changed
    before, after = head_calls[0][0][0], head_calls[1][0][0]
    assert torch.equal(before[:6], after[:6])
    # The state right after code 5 predicts code 6 and must see it changed;
    # a shift by two would leave it unchanged.
    assert not torch.allclose(before[6], after[6])
    assert not torch.allclose(before[7:], after[7:])


def test_generation_loss_scores_exactly_the_codes(umm, monkeypatch):
    scored = []

    def spy(logits, targets):
        scored.append(targets)
        return cross_entropy(logits, targets)

    cross_entropy = losses.cross_entropy
    monkeypatch.setattr(losses, 'cross_entropy', spy)
    pixels = to_float(random_images(2))
    codes = umm.gen_tokenizer.encode(pixels)
    head_calls = []
    capture(umm.generator.head, head_calls)

    for prompt in ('a red circle',
                   'several small purple triangles above a large circle'):
        umm.generation_loss(umm.text_condition([prompt] * 2), pixels)

    assert not torch.allclose(head_calls[0][0], head_calls[1][0])
    for targets in scored:
        assert torch.equal(targets, codes.flatten())


# understanding loss ----------------------------------------------------------
TURNS = [('What shapes are there?', 'A red circle and a blue square.'),
         ('Which one is larger?', 'The circle.')]


def test_conversation_labels_mark_answers_and_eos_only(umm):
    ids, labels = umm.conversation_tokens(TURNS, N)

    text = (f'{BOS}{umm.system_prompt}\n\n<|User|>: <begin_of_image>'
            + '<image_placeholder>' * N + '<end_of_image>'
            f'\n{TURNS[0][0]}\n\n<|Assistant|>: {TURNS[0][1]}{EOS}'
            f'<|User|>: {TURNS[1][0]}\n\n<|Assistant|>: {TURNS[1][1]}{EOS}')
    assert ids == tokens(umm, text)
    assert len(labels) == len(ids)
    # Runs of scored positions, each decoded, must be exactly the answers.
    runs, run = [], []
    for token, label in zip(ids, labels):
        if label == -100:
            if run:
                runs.append(run)
            run = []
        else:
            assert label == token
            run.append(token)
    runs.append(run)
    decoded = [umm.tokenizer.decode(r) for r in runs]
    assert decoded == [f' {TURNS[0][1]}{EOS}', f' {TURNS[1][1]}{EOS}']


def test_understanding_loss_matches_transformers_and_trains_the_llm(umm):
    pixels = to_float(random_images(1))
    loss = umm.understanding_loss(pixels, [TURNS])['loss']

    # The reference's tokens and labels are written out here, not taken
    # from conversation_tokens: the answers (with EOS) are scored, the rest
    # is not.
    pieces = [
        (f'{BOS}{umm.system_prompt}\n\n<|User|>: <begin_of_image>'
         + '<image_placeholder>' * N + '<end_of_image>'
         f'\n{TURNS[0][0]}\n\n<|Assistant|>:', False),
        (f' {TURNS[0][1]}{EOS}', True),
        (f'<|User|>: {TURNS[1][0]}\n\n<|Assistant|>:', False),
        (f' {TURNS[1][1]}{EOS}', True)]
    ids, labels = [], []
    for text, scored in pieces:
        piece = tokens(umm, text)
        ids += piece
        labels += piece if scored else [-100] * len(piece)
    reference = umm.hf_model(input_ids=torch.tensor([ids]),
                             pixel_values=pixels,
                             labels=torch.tensor([labels])).loss
    assert torch.isfinite(loss)
    assert torch.allclose(loss, reference, atol=1e-5)

    loss.backward()
    for part in (umm.language_model, umm.lm_head):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_understanding_loss_is_padding_invariant(umm):
    pixels = to_float(random_images(2))
    short = [TURNS[1]]
    batched = umm.understanding_loss(pixels, [TURNS, short])['loss']
    first = umm.understanding_loss(pixels[:1], [TURNS])['loss']
    second = umm.understanding_loss(pixels[1:], [short])['loss']
    count = [sum(label != -100 for label in umm.conversation_tokens(t, N)[1])
             for t in (TURNS, short)]
    token_mean = (first * count[0] + second * count[1]) / sum(count)
    assert torch.allclose(batched, token_mean, atol=1e-5)


# freeze policy ---------------------------------------------------------------
def test_default_freeze_policy():
    model = build_tiny_model()
    umm = model.umm
    model.train()
    parts = umm.parts()
    assert sorted(parts) == sorted(PARTS)
    for name, module in parts.items():
        frozen = name in ('vision_model', 'vqmodel')
        assert all(p.requires_grad != frozen for p in module.parameters())
        assert all(m.training != frozen for m in module.modules()), name


def test_frozen_parts_are_configurable():
    umm = build_tiny_model(
        frozen=['vision_model', 'vqmodel', 'language_model']).umm
    umm.train()
    assert not any(p.requires_grad for p in umm.language_model.parameters())
    assert not umm.language_model.training
    assert all(p.requires_grad for p in umm.lm_head.parameters())


def test_unknown_frozen_part_is_refused():
    with pytest.raises(ValueError, match='llm') as error:
        build_tiny_model(frozen=['vision_model', 'llm'])
    for name in PARTS:
        assert name in str(error.value)


def test_parameter_table_adds_up(umm):
    rows = {}
    for line in umm.parameter_table().splitlines()[3:]:
        name, train, frozen = line.split()[:3]
        rows[name] = (int(train.replace(',', '')),
                      int(frozen.replace(',', '')))
    total = sum(p.numel() for p in umm.hf_model.parameters())
    assert sorted(rows) == sorted(PARTS + ('total', ))
    for name, module in umm.parts().items():
        assert sum(rows[name]) == sum(p.numel() for p in module.parameters())
    assert sum(sum(rows[name]) for name in PARTS) == total
    assert sum(rows['total']) == total
    assert sum(p.numel() for p in umm.parameters()) == total
    assert rows['vision_model'][0] == rows['vqmodel'][0] == 0


# sampling --------------------------------------------------------------------
def naive_greedy(umm, embeds, null_embeds, guidance):
    """Re-run the whole unpadded sequence at every step, no cache."""
    gen, codes = umm.generator, []
    for _ in range(N):
        steps = gen.code_aligner(gen.code_embeddings(
            torch.tensor([codes], dtype=torch.long)))
        logits = [gen.head(umm.language_model(
            inputs_embeds=torch.cat([prefix[None], steps], 1),
        ).last_hidden_state[0, -1]) for prefix in (embeds, null_embeds)]
        cond, uncond = logits
        codes.append((uncond + guidance * (cond - uncond)).argmax().item())
    return codes


@torch.no_grad()
def test_cached_greedy_sampling_matches_naive_recompute(umm):
    scramble(umm)
    condition = umm.text_condition(
        ['a red circle', 'two blue squares left of a green triangle'])
    null = umm.null_condition(condition)

    codes = umm.generator.sample(umm.language_model, condition, null, N,
                                 guidance_scale=5.0, temperature=0)

    for i in range(2):
        real = condition.mask[i].bool()
        expected = naive_greedy(umm, condition.embeds[i, real],
                                null.embeds[i, real], 5.0)
        assert codes[i].tolist() == expected
    assert len(set(codes.flatten().tolist())) > N


@torch.no_grad()
def test_left_padded_batch_samples_like_each_prompt_alone(umm):
    scramble(umm)
    und_embeds = umm.encode_understanding(to_float(random_images(2)))
    instructions = ['Describe it.',
                    'Describe the image in detail, with every shape.']
    kwargs = dict(guidance_scale=5.0, temperature=0)

    def sample(rows):
        condition = umm.image_condition(und_embeds[rows],
                                        [instructions[r] for r in rows])
        return umm.generator.sample(umm.language_model, condition,
                                    umm.null_condition(condition), N,
                                    **kwargs)

    batched = sample([0, 1])
    assert torch.equal(batched[0], sample([0])[0])
    assert torch.equal(batched[1], sample([1])[0])


@torch.no_grad()
def test_seeded_sampling_is_reproducible(umm):
    condition = umm.text_condition(['a red circle', 'a blue square'])

    def sample(seed):
        return umm.generator.sample(
            umm.language_model, condition, umm.null_condition(condition), N,
            temperature=1.0, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))


@torch.no_grad()
def test_reconstruct_and_generate_return_images(umm):
    g = torch.Generator().manual_seed(0)
    images = [umm.reconstruct(to_float(random_images(2)), 'Describe it.',
                              generator=g),
              umm.generate(umm.text_condition(['a', 'b']), generator=g)]
    for image in images:
        assert image.shape == (2, 3, 64, 64)
        assert image.min() >= -1 and image.max() <= 1


# null condition --------------------------------------------------------------
def test_null_condition_blanks_all_but_bos_and_last_boi(umm):
    und_embeds = torch.randn(2, N, 64)
    condition = umm.image_condition(und_embeds, ['Describe it.',
                                                 'Describe it in detail.'])
    null = umm.null_condition(condition)
    pad, bos, boi = embed(umm, [umm.ids[k] for k in ('pad', 'bos', 'boi')])

    assert torch.equal(null.mask, condition.mask)
    for i in range(2):
        real = condition.embeds[i, condition.mask[i].bool()]
        blank = null.embeds[i, condition.mask[i].bool()]
        assert torch.equal(blank[0], bos) and torch.equal(blank[-1], boi)
        assert torch.equal(blank[1:-1], pad.expand_as(blank[1:-1]))
        assert torch.equal(real[0], bos) and torch.equal(real[-1], boi)


# export ----------------------------------------------------------------------
def test_export_loads_in_transformers_and_generates(umm, tmp_path):
    from transformers import JanusForConditionalGeneration, JanusProcessor
    with torch.no_grad():  # as if trained: the export must hold these
        umm.language_model.layers[0].mlp.up_proj.weight.add_(1.0)
    out = umm.save_pretrained(tmp_path / 'export')
    # Written through a private temporary folder, published as mkdir would.
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        0o666 & ~umask}

    model = JanusForConditionalGeneration.from_pretrained(
        out, local_files_only=True)
    processor = JanusProcessor.from_pretrained(out)
    ours, theirs = umm.hf_model.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(
        theirs['model.language_model.layers.0.mlp.up_proj.weight'],
        umm.language_model.layers[0].mlp.up_proj.weight)

    ids = umm.ids
    inputs = processor(text=[f'{BOS}<|User|>: a red circle\n\n<|Assistant|>:'],
                       generation_mode='image', return_tensors='pt')
    # The export's own generation_config.json carries boi/pad/bos ids.
    assert model.generation_config.generation_kwargs == dict(
        boi_token_id=ids['boi'])
    codes = model.generate(**inputs, generation_mode='image',
                           do_sample=False)
    image = model.decode_image_tokens(codes)
    assert image.shape == (1, 64, 64, 3)

    # transformers' own sampler and ours agree on the same prompt.
    condition = umm.text_condition(['a red circle'])
    sampled = umm.generator.sample(umm.language_model, condition,
                                   umm.null_condition(condition), N,
                                   guidance_scale=5.0, temperature=0)
    assert torch.equal(codes, sampled)


def test_export_reloads_as_a_umm_with_the_same_loss(umm, tmp_path):
    from reca_toolkit.registry import UMMS
    out = umm.save_pretrained(tmp_path / 'export')
    reloaded = UMMS.build(dict(type='JanusProUMM', pretrained=str(out),
                               weights_dtype='float32'))
    pixels = to_float(random_images(2))
    prompts = ['a red circle', 'two blue squares']

    with torch.no_grad():
        losses = [m.generation_loss(m.text_condition(prompts), pixels)['loss']
                  for m in (umm, reloaded)]
    assert reloaded.ids == umm.ids
    assert torch.allclose(*losses, atol=1e-6)


def test_export_refuses_a_non_empty_folder(umm, tmp_path):
    out = tmp_path / 'export'
    out.mkdir()
    (out / 'notes.txt').write_text('keep me')

    with pytest.raises(FileExistsError):
        umm.save_pretrained(out)
    assert [p.name for p in out.iterdir()] == ['notes.txt']
    assert (out / 'notes.txt').read_text() == 'keep me'
    assert [p.name for p in tmp_path.iterdir()] == ['export']


# missing weights -------------------------------------------------------------
def build_pretrained(path):
    from reca_toolkit.models.umm.janus_pro import JanusProUMM
    return JanusProUMM(pretrained=str(path))


def test_missing_weights_folder_names_path_and_source():
    with pytest.raises(FileNotFoundError) as error:
        build_pretrained('/nonexistent')
    assert '/nonexistent' in str(error.value)
    assert 'deepseek-community/Janus-Pro-1B' in str(error.value)


def test_folder_without_safetensors_is_refused(tmp_path):
    (tmp_path / 'config.json').write_text('{"model_type": "janus"}')
    with pytest.raises(FileNotFoundError, match='model.safetensors'):
        build_pretrained(tmp_path)

    (tmp_path / 'pytorch_model.bin').write_bytes(b'not loaded')
    with pytest.raises(FileNotFoundError, match='safetensors') as error:
        build_pretrained(tmp_path)
    assert '.bin' in str(error.value)


# frozen encoders -------------------------------------------------------------
def siglip_output(umm):
    outputs = []
    capture(umm.und_encoder.vision_model, outputs)
    # Pixels that carry grad: with frozen weights alone no graph would be
    # built anyway, so only this shows the encoder runs without autograd.
    pixels = to_float(random_images(2)).requires_grad_()
    embeds = umm.encode_understanding(pixels)
    return outputs[0][1].last_hidden_state, embeds


def test_frozen_siglip_builds_no_graph(umm):
    features, embeds = siglip_output(umm)
    assert not features.requires_grad
    assert embeds.requires_grad and embeds.shape == (2, N, 64)


def test_trainable_siglip_builds_a_graph():
    features, _ = siglip_output(build_tiny_model(frozen=['vqmodel']).umm)
    assert features.requires_grad
