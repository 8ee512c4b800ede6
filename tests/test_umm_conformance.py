"""The UMM conformance suite: what every family's adapter must do.

Each family contributes one :class:`Family` case -- its tiny model config of
the real classes and what to expect of it -- and inherits every test here,
the way transformers' model tester mixins work. A new family adds a case;
if it needs a special case in a test, the seam is in the wrong place.
"""
import copy
import math
import os
from dataclasses import dataclass

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.config import Config

from conftest import REPO, random_images, to_float
from test_distributed import free_port


@dataclass
class Family:
    name: str
    config: str  # the tiny RecAModel config of the real classes
    image_size: int
    frozen: tuple  # parts frozen by default
    recon_loss: tuple  # (low, high) generation loss at initialisation
    i2t_loss: tuple  # (low, high) image-to-text loss at initialisation
    export_drops: tuple = ('config', 'tokenizer')  # what a reload leaves out


FAMILIES = [
    # CE over 512 codes at init: ln(512) = 6.24; text over 1024: ln = 6.93.
    Family('janus_pro', 'configs/_base_/models/janus_tiny.py', 64,
           ('vision_model', 'vqmodel'), (5.7, 6.8), (6.3, 7.6)),
    # The diffusion head starts at eps = 0 and a mid variance: MSE ~1 plus
    # the variational bound; text over 1024 tokens.
    Family('harmon', 'configs/_base_/models/harmon_tiny.py', 32, ('vae', ),
           (1.0, 8.0), (6.3, 7.6)),
    # MaskGIT CE over the whole 577-way output layer (512 text tokens, 64
    # codes, the mask token): ln(577) = 6.36; text over the same layer.
    Family('showo', 'configs/_base_/models/showo_tiny.py', 32,
           ('vision', 'magvit'), (5.8, 7.0), (5.8, 7.0),
           export_drops=('config', 'tokenizer', 'vision_config',
                         'gen_tokenizer')),
    # llm2vae starts at zero: the velocity MSE is E|noise - x0|^2 = 1 plus
    # the latents' second moment; text over 1024 tokens. The ViT,
    # connector and VAE are frozen; freeze_und freezes the understanding
    # expert inside language_model.
    Family('bagel', 'configs/_base_/models/bagel_tiny.py', 32,
           ('vae', 'vit', 'connector'), (1.0, 3.0), (6.3, 7.6),
           export_drops=('llm', 'vit', 'tokenizer')),
]
IDS = [f.name for f in FAMILIES]


def model_cfg(family, **umm):
    cfg = Config.fromfile(str(REPO / family.config)).model.to_dict()
    cfg = copy.deepcopy(cfg)
    cfg['umm'].update(umm)
    return cfg


def build(family, seed=0, **umm):
    from reca_toolkit.registry import MODELS
    torch.manual_seed(seed)
    return MODELS.build(model_cfg(family, **umm))


@pytest.fixture(scope='module', params=FAMILIES, ids=IDS)
def family(request):
    return request.param


@pytest.fixture(scope='module')
def model(family):
    return build(family)


def batch(family, size=2, seed=0):
    pixels = to_float(random_images(size, family.image_size, seed=seed))
    return dict(
        recon=dict(und_pixels=pixels, gen_pixels=pixels,
                   draw=torch.arange(size) + 100 * seed),
        i2t=dict(und_pixels=pixels, draw=torch.arange(size),
                 conversations=[[('What is in the image?',
                                  f'Shapes, picture {i}.')]
                                for i in range(size)]))


# shapes and templates -------------------------------------------------------
def block_start(sequence, block):
    """Where ``block`` (``[N, D]``) stands contiguously in ``sequence``, or
    None."""
    for start in range(len(sequence) - len(block) + 1):
        if torch.equal(sequence[start:start + len(block)], block):
            return start
    return None


def test_image_condition_carries_the_understanding_embeddings(family,
                                                               model):
    """Every row -- the generic instruction's too -- holds the image's
    embeddings as they came out of the encoder: RecA never drops them."""
    umm = model.umm
    pixels = batch(family)['recon']['und_pixels']
    with torch.no_grad():
        embeds = umm.encode_understanding(pixels)
        condition = umm.image_condition(embeds, [None, 'Describe the image.'])
    width = umm.backbone.get_input_embeddings().embedding_dim
    assert embeds.shape[0] == 2 and embeds.shape[2] == width
    for i in range(2):
        assert block_start(condition.embeds[i], embeds[i]) is not None, i
    # Both rows end where generation starts: left padding only.
    assert condition.mask[:, -1].all()
    assert not torch.equal(condition.embeds[0], condition.embeds[1])


def test_null_prompt_is_the_familys_own_and_concatenates(family, model):
    umm = model.umm
    prompts = umm.text_condition(['a red circle', 'a red square'])
    assert prompts.mask.sum(1).tolist()[0] == prompts.mask.sum(1).tolist()[1]
    assert not torch.equal(prompts.embeds[0], prompts.embeds[1])
    null = umm.null_condition(prompts)
    # The null prompt says nothing of the prompt it guides.
    assert len(null) == 2 and torch.equal(null.embeds[0], null.embeds[1])
    assert umm.text_condition([None]).mask[0].any()
    both = type(prompts).cat([prompts, null])
    assert len(both) == 4 and both.mask[:, -1].all()
    # Rows keep their own real positions under the extra left padding.
    for i, source in enumerate([prompts, null]):
        for j in range(2):
            row = both.take([2 * i + j])
            assert torch.equal(row.embeds[0, row.mask[0].bool()],
                               source.embeds[j, source.mask[j].bool()])
            assert torch.equal(row.position_ids[0, row.mask[0].bool()],
                               source.position_ids[j, source.mask[j].bool()])


# gradients and freezing ---------------------------------------------------------
def without_zero_init(model):
    """Zero-initialised layers (adaLN-zero heads) block every gradient
    upstream of them at step 0; give them values so each path carries one.
    """
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and not param.any():
                param.normal_(0, 0.02)
    return model


def test_gradient_reaches_every_trainable_part_and_no_frozen_one(family):
    model = without_zero_init(build(family))
    umm = model.umm
    assert set(umm.frozen) == set(family.frozen)
    losses = model.loss(batch(family))
    sum(losses[k] for k in losses if k.startswith('loss')).backward()
    for name, module in umm.parts().items():
        params = list(module.parameters())
        has_grad = any(p.grad is not None and p.grad.abs().sum() > 0
                       for p in params)
        if name in family.frozen:
            assert not any(p.requires_grad for p in params), name
            assert not module.training, name
            assert not has_grad, name
        else:
            assert has_grad, f'trainable part {name} got no gradient'


def test_freezing_a_trainable_part_stops_its_training(family):
    trainable = [n for n in build(family).umm.parts()
                 if n not in family.frozen]
    target = trainable[0]
    model = without_zero_init(
        build(family, frozen=list(family.frozen) + [target]))
    losses = model.loss(batch(family))
    sum(losses[k] for k in losses if k.startswith('loss')).backward()
    module = model.umm.parts()[target]
    assert all(p.grad is None for p in module.parameters())


def test_unknown_frozen_part_names_the_valid_ones(family):
    with pytest.raises(ValueError, match='valid parts'):
        build(family, frozen=['no_such_part'])


# determinism ------------------------------------------------------------------
def generation_loss(umm, data, draws):
    embeds = umm.encode_understanding(data['und_pixels'])
    condition = umm.image_condition(embeds, [None] * len(embeds))
    return umm.generation_loss(condition, data['gen_pixels'],
                               draws=draws)['loss']


def test_random_choices_come_from_the_draws_alone(family, model):
    data = batch(family, size=3)['recon']
    torch.manual_seed(1)
    first = generation_loss(model.umm, data, [11, 12, 13])
    torch.manual_seed(2)  # the global RNG must not matter
    again = generation_loss(model.umm, data, [11, 12, 13])
    assert torch.equal(first, again)


def test_a_samples_loss_does_not_depend_on_its_batch(family, model):
    """Per-sample draws: reordering a batch (as another world size or a
    resume slices it) leaves the loss unchanged; a draw shared by the
    batch or keyed by position would not."""
    umm = model.umm
    data = batch(family, size=3)['recon']
    order = [2, 0, 1]
    seeds = [5, 6, 7]
    forward = generation_loss(umm, data, seeds)
    backward = generation_loss(umm, {k: v[order] for k, v in data.items()},
                               [seeds[i] for i in order])
    torch.testing.assert_close(forward, backward, rtol=1e-5, atol=1e-6)
    assert not torch.equal(forward, generation_loss(umm, data, [5, 6, 8])) \
        or not umm.draws_at_random


def test_pixels_or_cached_inputs_exactly_one_and_draws_where_random(
        family, model):
    umm = model.umm
    data = batch(family, size=1)['recon']
    pixels = data['und_pixels']
    name = type(umm).__name__
    for given in (dict(), dict(und_pixels=pixels, und_features=pixels)):
        with pytest.raises(ValueError, match=f'{name}.encode_understanding '
                           'needs exactly one of und_pixels and und_features'):
            umm.encode_understanding(**given)
    condition = umm.image_condition(umm.encode_understanding(pixels), [None])
    with pytest.raises(ValueError, match='exactly one of gen_pixels and '
                       'gen_targets'):
        umm.generation_loss(condition, draws=[0])
    if umm.draws_at_random:
        with pytest.raises(ValueError, match=f'{name} draws .* pass draws='):
            umm.generation_loss(condition, data['gen_pixels'])
    else:
        umm.generation_loss(condition, data['gen_pixels'])


def test_image_to_text_logits_come_ce_chunk_size_positions_at_a_time(
        family, model):
    umm = model.umm
    data = batch(family)['i2t']
    full = umm.understanding_loss(data['und_pixels'], data['conversations'])
    rows = []
    hook = umm.lm_head.register_forward_hook(
        lambda module, args, out: rows.append(out.shape[0]))
    umm.ce_chunk_size = 3
    try:
        chunked = umm.understanding_loss(data['und_pixels'],
                                         data['conversations'])
    finally:
        umm.ce_chunk_size = None
        hook.remove()
    assert max(rows) == 3 and len(rows) > 1
    torch.testing.assert_close(chunked['loss'], full['loss'])
    assert build(family, ce_chunk_size=3).umm.ce_chunk_size == 3


def test_each_answer_is_scored_against_its_own_image(family):
    """Answers of one length, questions of two: the batch's image-to-text
    loss is the mean of each (image, conversation) pair's own loss, so the
    answers must meet their images (and padding must not leak in); crossed
    pairs give another loss. A model at initialisation is nearly indifferent
    to its input, so its matrices are scaled up and the images are a black
    and a white one."""
    from reca_toolkit.models.objectives import ImageToText
    model = build(family)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(4)
    objective = ImageToText()
    size = family.image_size
    pixels = torch.stack([torch.full((3, size, size), -1.0),
                          torch.full((3, size, size), 1.0)])
    conversations = [[('What is in the image?', 'Shapes.')],
                     [('Describe the picture in a few words.', 'Shapes.')]]

    def loss(rows, convs):
        return objective.loss(model.umm, dict(und_pixels=pixels[rows],
                                              conversations=convs))['loss']

    with torch.no_grad():
        paired = loss([0, 1], conversations)
        own = (loss([0], conversations[:1]) + loss([1], conversations[1:])) / 2
        crossed = loss([1, 0], conversations)
    # Batching moves the loss by float32 rounding (~1e-6 at 6.5); crossing
    # the pairs by over a hundred times that.
    torch.testing.assert_close(paired, own, rtol=0, atol=1e-5)
    assert (crossed - paired).abs() > 1e-4, (paired, crossed)


def gradients(family, data):
    model = without_zero_init(build(family))
    losses = model.loss(data)
    sum(losses[k] for k in losses if k.startswith('loss')).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()
                      if p.grad is not None])


def _ddp_worker(rank, world, port, family, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    try:
        from reca_toolkit.utils import register_all_modules
        register_all_modules()
        data = batch(family, size=4)
        rows = slice(rank * 2, rank * 2 + 2)
        grads = gradients(family, {s: {k: v[rows] for k, v in d.items()}
                                   for s, d in data.items()})
        torch.distributed.all_reduce(grads)
        torch.save(grads / world, out / f'grads_{rank}.pt')
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_gradient_equals_one_process(family, tmp_path):
    """DDP averages gradients; with global-batch normalisation and
    per-sample draws the average equals the single-process gradient."""
    mp.start_processes(_ddp_worker, nprocs=2, start_method='spawn',
                       args=(2, free_port(), family, tmp_path))
    one = gradients(family, batch(family, size=4))
    two = torch.load(tmp_path / 'grads_0.pt', weights_only=True)
    assert one.abs().sum() > 0
    torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-7)
    # A gradient computed from one rank's half alone is far off.
    half = gradients(family, {s: {k: v[:2] for k, v in d.items()}
                              for s, d in batch(family, size=4).items()})
    assert (half - one).abs().max() > 100 * (two - one).abs().max()


# losses at initialisation ---------------------------------------------------------
def test_losses_at_init_are_in_the_expected_range(family, model):
    losses = model.loss(batch(family, size=4))
    low, high = family.recon_loss
    assert low < float(losses['loss_recon']) < high, losses
    low, high = family.i2t_loss
    assert low < float(losses['loss_i2t']) < high, losses
    assert math.isfinite(float(losses['loss_i2t']))


# image-to-text ------------------------------------------------------------------------
def test_describe_prompts_as_image_to_text_trains(family, model):
    """describe's prompt is understanding_loss's conversation up to where
    the answer's labels begin: the same inputs, positions and mask, so the
    same states, its last the one that predicts the answer's first token;
    decoding stops at the answer's last label."""
    from reca_toolkit.models.umm.base import run_backbone
    umm = model.umm
    model.eval()
    pixels = batch(family, size=1)['i2t']['und_pixels']
    question, answer = 'What is in the image?', 'Shapes.'
    calls = []

    def keep(module, args, kwargs, output):
        calls.append((kwargs, output.last_hidden_state))

    handle = umm.backbone.register_forward_hook(keep, with_kwargs=True)
    try:
        with torch.no_grad():
            umm.understanding_loss(pixels, [[(question, answer)]])
            condition, stop = umm.question_condition(pixels, [question])
            run_backbone(umm.backbone, condition, use_cache=False)
    finally:
        handle.remove()
    (trained, trained_states), (asked, asked_states) = calls
    n = asked['inputs_embeds'].shape[1]
    _, labels = umm.conversation_tokens(
        [(question, answer)], umm.encode_understanding(pixels).shape[1])
    assert n == next(i for i, label in enumerate(labels) if label != -100)
    assert stop == labels[-1]
    torch.testing.assert_close(asked['inputs_embeds'],
                               trained['inputs_embeds'][:, :n])
    assert torch.equal(asked['position_ids'], trained['position_ids'][:, :n])
    mask = trained['attention_mask']
    assert torch.equal(asked['attention_mask'],
                       mask[..., :n, :n] if mask.ndim == 4 else mask[:, :n])
    torch.testing.assert_close(asked_states, trained_states[:, :n],
                               atol=1e-5, rtol=1e-5)


def test_validation_answers_image_to_text_rows(family, model):
    model.eval()
    rows = batch(family)['i2t']
    results = model.predict(dict(describe=rows))
    texts = [r['pred_text'] for r in results]
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert [r['conversations'] for r in results] == rows['conversations']
    assert texts == model.umm.describe(rows['und_pixels'],
                                       ['What is in the image?'] * 2)


# sampling ---------------------------------------------------------------------------
def test_sampling_is_seeded_and_in_range(family, model):
    model.eval()
    first = model.generate(['a red circle', 'a blue square'], seed=3)
    again = model.generate(['a red circle', 'a blue square'], seed=3)
    other = model.generate(['a red circle', 'a blue square'], seed=4)
    size = family.image_size
    assert first.shape == (2, 3, size, size)
    assert torch.isfinite(first).all() and first.abs().max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)
    pixels = batch(family)['recon']['und_pixels']
    recon = model.reconstruct(pixels, seed=0)
    assert recon.shape == pixels.shape and torch.isfinite(recon).all()
    unguided = model.generate(['a red circle'], seed=3, guidance_scale=1.0)
    assert unguided.shape == (1, 3, size, size)


# export ------------------------------------------------------------------------------
def reload(family, folder):
    """The family's tiny model built from an exported weights folder."""
    from reca_toolkit.registry import MODELS
    cfg = model_cfg(family)
    for key in family.export_drops:
        cfg['umm'].pop(key, None)
    cfg['umm']['pretrained'] = str(folder)
    return MODELS.build(cfg)


def test_export_reloads_to_the_same_model(family, tmp_path):
    model = build(family, seed=1)
    with torch.no_grad():
        for p in model.umm.backbone.parameters():  # not the init values
            p.add_(0.01 * torch.randn_like(p))
    out = model.umm.save_pretrained(tmp_path / 'export')
    with pytest.raises(FileExistsError):
        model.umm.save_pretrained(tmp_path / 'export')
    reloaded = reload(family, out)
    data = batch(family)
    mine, theirs = model.loss(data), reloaded.loss(data)
    for key in ('loss_recon', 'loss_i2t'):
        torch.testing.assert_close(theirs[key], mine[key], rtol=1e-5,
                                   atol=1e-6)


def test_lora_trains_adapters_only_and_exports_merged(family, tmp_path):
    """LoRA is shared machinery: adapters in the family's ``lora_part``,
    its own weights frozen, and an export that folds them back in."""
    pytest.importorskip('peft')
    lora = dict(r=4, lora_alpha=8, target_modules=['q_proj', 'v_proj'])
    model = build(family, lora=lora)
    backbone = model.umm.backbone
    names = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert names and all('.lora_' in n for n in names)
    with torch.no_grad():
        for name, param in backbone.named_parameters():
            if 'lora_B' in name:  # zero at init: the adapters would be a no-op
                param.normal_(0, 0.1)
    out = model.umm.save_pretrained(tmp_path / 'export')
    merged = reload(family, out)
    data = batch(family)
    mine, theirs = model.loss(data), merged.loss(data)
    torch.testing.assert_close(theirs['loss_recon'], mine['loss_recon'],
                               rtol=1e-4, atol=1e-5)
