"""Objectives over the tiny Janus-Pro UMM: gradient routing, loss logging,
per-draw randomness and the classifier-free null prompt."""
import pytest
import torch
from conftest import build_tiny_model, random_images, to_float

from reca_toolkit.models.objectives import (ReconstructionAlignment,
                                            TextToImage, load_instructions)

GENERATION_PARTS = ('generation_embeddings', 'generation_aligner',
                    'generation_head')
ALL = dict(recon=dict(type='ReconstructionAlignment', weight=1.0),
           i2t=dict(type='ImageToText', weight=1.0),
           t2i=dict(type='TextToImage', weight=1.0))


def batches():
    """Per-source batches as ``collate_by_source`` gives them, normalised."""
    pixels = to_float(random_images(2))
    draw = torch.arange(2)
    conversations = [[('What is this?', 'A red circle.')],
                     [('Colour?', 'Blue.'), ('Shape?', 'Square.')]]
    return dict(
        recon=dict(und_pixels=pixels, gen_pixels=pixels.flip(-1), draw=draw),
        i2t=dict(und_pixels=pixels, conversations=conversations, draw=draw),
        t2i=dict(gen_pixels=pixels, caption=['a red circle', 'a blue square'],
                 draw=draw))


def backward(model, inputs):
    model.zero_grad(set_to_none=True)
    sum(v for k, v in model.loss(inputs).items()
        if k.startswith('loss')).backward()
    return model.umm.parts()


def has_grad(module):
    return any(p.grad is not None and p.grad.abs().sum() > 0
               for p in module.parameters())


# gradient routing ------------------------------------------------------------
@pytest.mark.parametrize('weight', [0.0, 1.0])
def test_recon_weight_gates_the_generation_gradient(weight):
    model = build_tiny_model(objectives=dict(
        recon=dict(type='ReconstructionAlignment', weight=weight),
        i2t=dict(type='ImageToText', weight=1.0)))
    inputs = batches()
    parts = backward(model, dict(recon=inputs['recon'], i2t=inputs['i2t']))

    assert has_grad(parts['language_model'])
    for name in GENERATION_PARTS:
        assert has_grad(parts[name]) == (weight > 0), name


def test_i2t_gradient_reaches_the_llm():
    model = build_tiny_model()
    parts = backward(model, dict(i2t=batches()['i2t']))
    assert has_grad(parts['language_model'])
    assert has_grad(parts['lm_head'])
    assert has_grad(parts['aligner'])
    for name in GENERATION_PARTS:
        assert not has_grad(parts[name]), name


def test_frozen_parts_get_no_gradient_from_any_objective():
    model = build_tiny_model(objectives=ALL)
    parts = backward(model, batches())
    for name in ('vision_model', 'vqmodel'):
        assert all(p.grad is None for p in parts[name].parameters()), name
    for name in GENERATION_PARTS + ('language_model', 'lm_head', 'aligner'):
        assert has_grad(parts[name]), name


# logging and weights ---------------------------------------------------------
def test_each_objective_is_logged_and_weighted():
    model = build_tiny_model(objectives=ALL)
    inputs = batches()
    with torch.no_grad():
        once = model.loss(inputs)
        model.objectives['recon'].weight = 2.0
        twice = model.loss(inputs)

    assert set(once) == {f'{k}_{n}' for k in ('loss', 'acc')
                         for n in ('recon', 'i2t', 't2i')}
    assert len({once[f'loss_{n}'].item() for n in ALL}) == 3
    assert torch.allclose(twice['loss_recon'], 2 * once['loss_recon'])
    for key in ('loss_i2t', 'loss_t2i', 'acc_recon'):
        assert torch.equal(twice[key], once[key])


def test_a_batch_no_weighted_objective_reads_is_refused():
    model = build_tiny_model(objectives=dict(
        recon=dict(type='ReconstructionAlignment', weight=0.0),
        i2t=dict(type='ImageToText', weight=1.0)))
    inputs = batches()
    for batch in (dict(captions=inputs['t2i']), dict(recon=inputs['recon'])):
        with pytest.raises(ValueError) as error:
            model.loss(batch)
        for name in list(batch) + ['recon', 'i2t']:
            assert name in str(error.value)


# reconstruction instructions -------------------------------------------------
def test_instruction_pool_is_large():
    assert len(set(load_instructions())) >= 300


def test_instructions_are_per_draw():
    recon = ReconstructionAlignment()
    draws = range(5000)
    chosen = [recon.instruction(d) for d in draws]

    assert chosen[:50] == [ReconstructionAlignment().instruction(d)
                           for d in range(50)]
    assert chosen[:50] != [ReconstructionAlignment(seed=1).instruction(d)
                           for d in range(50)]
    assert len(set(chosen[:50])) > 35
    generic = chosen.count(recon.generic_instruction) / len(chosen)
    assert 0.08 < generic < 0.12
    assert set(chosen) - {recon.generic_instruction} <= set(
        load_instructions())


def test_generic_samples_keep_the_image_embeddings(monkeypatch):
    umm = build_tiny_model().umm
    recon = ReconstructionAlignment()
    generic = next(d for d in range(100)
                   if recon.instruction(d) == recon.generic_instruction)
    specific = next(d for d in range(100)
                    if recon.instruction(d) != recon.generic_instruction)
    batch = batches()['recon']
    batch['draw'] = torch.tensor([generic, specific])
    calls = []
    image_condition = umm.image_condition

    def spy(und_embeds, instructions):
        calls.append((und_embeds, instructions))
        return image_condition(und_embeds, instructions)

    monkeypatch.setattr(umm, 'image_condition', spy)
    recon.loss(umm, batch)

    und_embeds, instructions = calls[0]
    assert instructions == [recon.generic_instruction,
                            recon.instruction(specific)]
    with torch.no_grad():
        expected = umm.encode_understanding(batch['und_pixels'])
    assert torch.allclose(und_embeds, expected)


# text-to-image null prompt ---------------------------------------------------
def conditions_seen(umm, objective, draws, monkeypatch):
    """The condition ``objective`` hands to the generation loss."""
    seen = []

    def spy(condition, gen_pixels, draws=None):
        seen.append(condition)
        return dict(loss=torch.zeros(()))

    monkeypatch.setattr(umm, 'generation_loss', spy)
    captions = [f'a red circle {d}' for d in draws]
    objective.loss(umm, dict(gen_pixels=None, caption=captions,
                             draw=torch.tensor(draws)))
    return seen[-1], umm.text_condition(captions)


def nulled_rows(umm, condition, plain):
    """Per row: True if blanked to the null prompt, False if untouched."""
    pad = umm.language_model.get_input_embeddings()(
        torch.tensor(umm.ids['pad']))
    rows = []
    for i in range(len(condition)):
        content = plain.extras['content'][i]
        blank = (condition.embeds[i, content] == pad).all().item()
        keep = torch.equal(condition.embeds[i], plain.embeds[i])
        assert blank != keep
        frame = ~content & plain.mask[i].bool()
        assert torch.equal(condition.embeds[i, frame], plain.embeds[i, frame])
        rows.append(blank)
    assert torch.equal(condition.mask, plain.mask)
    return rows


def test_t2i_null_prompt_is_per_draw(monkeypatch):
    umm = build_tiny_model().umm
    t2i = TextToImage(null_prob=0.3)
    draws = list(range(1000, 1200))

    condition, plain = conditions_seen(umm, t2i, draws, monkeypatch)
    nulled = dict(zip(draws, nulled_rows(umm, condition, plain)))
    assert 0.2 < sum(nulled.values()) / len(nulled) < 0.4

    # The same draws at other batch positions get the same choice.
    some = [d for d in draws if nulled[d]][:3] + \
        [d for d in draws if not nulled[d]][:3]
    some = some[::-1]
    condition, plain = conditions_seen(umm, t2i, some, monkeypatch)
    assert nulled_rows(umm, condition, plain) == [nulled[d] for d in some]


def test_t2i_without_null_prob_keeps_every_caption(monkeypatch):
    umm = build_tiny_model().umm
    condition, plain = conditions_seen(umm, TextToImage(null_prob=0.0),
                                       list(range(20)), monkeypatch)
    assert not any(nulled_rows(umm, condition, plain))
