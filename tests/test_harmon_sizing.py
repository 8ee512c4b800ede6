"""Harmon sized from its architecture alone: parameter counts against hand
sums of the published parts, and the meta-device FLOP count against the
closed form of docs/performance.md ("FLOPs per family")."""
import copy

import pytest
import torch

from conftest import REPO
from reca_toolkit.engine.launch import load_config
from reca_toolkit.engine.meta_pass import meta_training_step
from reca_toolkit.engine.synthetic_data import synthetic_batches
from reca_toolkit.models.harmon_weights import KL16_CONFIG
from reca_toolkit.models.weightless import build_weightless
from test_perf_tools import assert_meta_step_counts_the_real_step

DEMO = 'configs/reca/harmon_demo.py'
# Qwen2.5-{0.5B,1.5B}(-Instruct): the parameter counts of the released
# safetensors (tied embeddings counted once).
QWEN_PUBLISHED = {'0.5b': 494_032_768, '1.5b': 1_543_714_304}
# MAR-B and MAR-H as LTH14/mar reports them (with its 1000-class embedding,
# which Harmon does not have): 208 M and 943 M.
MAR_PUBLISHED = {'0.5b': 208e6, '1.5b': 943e6}


# --------------------------------------------------------------- hand sums

def qwen2_params(vocab_size, hidden_size, intermediate_size,
                 num_hidden_layers, num_attention_heads, num_key_value_heads,
                 **_):
    """Qwen2 with tied embeddings: q/k/v with biases, o and the MLP
    without, two RMSNorms per layer and a final one."""
    d, head = hidden_size, hidden_size // num_attention_heads
    kv = num_key_value_heads * head
    layer = (d * d + d) + 2 * (d * kv + kv) + d * d \
        + 3 * d * intermediate_size + 2 * d
    return vocab_size * d + num_hidden_layers * layer + d


def mar_params(encoder_dim, encoder_depth, decoder_dim, decoder_depth, head,
               token_dim=16, grid=16, buffer_size=64, **_):
    """MAR without a class embedding: timm blocks (12 D^2 + 13 D), the
    embeddings and norms around them, and DiffLoss (SimpleMLPAdaLN)."""
    def blocks(dim, depth):
        return depth * (12 * dim * dim + 13 * dim)

    positions = buffer_size + grid * grid
    e, dd = encoder_dim, decoder_dim
    encoder = (token_dim * e + e) + 2 * e + e + positions * e \
        + blocks(e, encoder_depth) + 2 * e
    decoder = (e * dd + dd) + dd + positions * dd \
        + blocks(dd, decoder_depth) + 2 * dd + grid * grid * dd
    w, depth = head['width'], head['depth']
    diffloss = (256 * w + w) + (w * w + w) \
        + (dd * w + w) + (token_dim * w + w) \
        + depth * (2 * w + 2 * (w * w + w) + 3 * w * w + 3 * w) \
        + (w * 2 * token_dim + 2 * token_dim) + (2 * w * w + 2 * w)
    return encoder + decoder + diffloss


def mlp_params(width_in, width_out):
    return width_in * width_out + width_out + width_out * width_out \
        + width_out


def kl16_params(block_out_channels, layers_per_block, latent_channels,
                down_block_types, **_):
    """The LDM KL autoencoder: convolutions, GroupNorms and the 1-head
    attention blocks (q, k, v, out) of the encoder's attention level and
    both mid blocks; the decoder has one more resnet per level."""
    def conv(cin, cout, k=3):
        return cin * cout * k * k + cout

    def resnet(cin, cout):
        return 2 * cin + conv(cin, cout) + 2 * cout + conv(cout, cout) + (
            conv(cin, cout, 1) if cin != cout else 0)

    def attention(c):
        return 2 * c + 4 * (c * c + c)

    chans, z = block_out_channels, latent_channels
    top = chans[-1]
    mid = 2 * resnet(top, top) + attention(top)
    encoder = conv(3, chans[0])
    cin = chans[0]
    for i, (cout, kind) in enumerate(zip(chans, down_block_types)):
        for j in range(layers_per_block):
            encoder += resnet(cin if j == 0 else cout, cout)
            if kind.startswith('Attn'):
                encoder += attention(cout)
        if i < len(chans) - 1:
            encoder += conv(cout, cout)
        cin = cout
    encoder += mid + 2 * top + conv(top, 2 * z)
    decoder = conv(z, top) + mid
    cin = top
    for i, cout in enumerate(reversed(chans)):
        for j in range(layers_per_block + 1):
            decoder += resnet(cin if j == 0 else cout, cout)
        if i < len(chans) - 1:
            decoder += conv(cout, cout)
        cin = cout
    decoder += 2 * chans[0] + conv(chans[0], 3)
    quant = conv(2 * z, 2 * z, 1) + conv(z, z, 1)
    return encoder + decoder + quant


# ------------------------------------------------------------- the formula

def linear(width_in, width_out, rows, input_grad=True):
    """A trained linear layer, forward + backward: 2 FLOPs per multiply-
    add, forward once, backward for the weight and (unless its input needs
    no gradient) for the input."""
    return 2 * width_in * width_out * rows * (3 if input_grad else 2)


def attention(width, length, rows, backward=True):
    """Scaled-dot-product attention over ``length`` positions, as
    torch.utils.flop_counter counts the fused kernels: 4 d L^2 forward,
    10 d L^2 backward (the kernel recomputes the scores); full, not causal.
    """
    return (14 if backward else 4) * width * length * length * rows


def vae_encoder_flops(vae, size, images):
    """Forward of the frozen LDM encoder (convolutions, attention's
    projections and scores) and the quant conv, at ``size`` px."""
    def conv(cin, cout, res, k=3):
        return 2 * cin * cout * k * k * res * res

    def resnet(cin, cout, res):
        return conv(cin, cout, res) + conv(cout, cout, res) + (
            conv(cin, cout, res, 1) if cin != cout else 0)

    def attn(c, res):
        return 4 * 2 * c * c * res * res + attention(c, res * res, 1, False)

    chans, z = vae['block_out_channels'], vae['latent_channels']
    res, cin = size, chans[0]
    total = conv(3, cin, res)
    for i, (cout, kind) in enumerate(zip(chans, vae['down_block_types'])):
        for j in range(vae['layers_per_block']):
            total += resnet(cin if j == 0 else cout, cout, res)
            if kind.startswith('Attn'):
                total += attn(cout, res)
        if i < len(chans) - 1:
            res //= 2
            total += conv(cout, cout, res)
        cin = cout
    total += 2 * resnet(cin, cin, res) + attn(cin, res)
    total += conv(cin, 2 * z, res) + conv(2 * z, 2 * z, res, 1)
    return images * total


def harmon_step_flops(arch, shapes):
    """Model FLOPs of one Harmon RecA step (forward + backward, no
    recomputation): the formula of docs/performance.md, per term and in
    total (``total``; ``recon`` and ``i2t`` per objective).

    ``arch``: the sizes (:func:`architecture`). ``shapes``: ``recon_rows``,
    ``i2t_rows``; ``recon_llm`` / ``i2t_llm``: the LLM's (padded) sequence
    length; ``visible``: the most visible tokens of a reconstruction row
    (the generation encoder's padded length is ``buffer + visible``);
    ``masked``: masked tokens summed over the rows; ``answers``: the
    answer tokens the image-to-text loss scores.
    """
    a, s = arch, shapes
    n, buffer, c = a['tokens'], a['buffer'], a['token_dim']
    und = n + buffer
    e, dd, d = a['encoder_dim'], a['decoder_dim'], a['hidden_size']

    def mar_encoder(length, rows):
        return linear(c, e, rows * n, input_grad=False) + a['encoder_depth'] \
            * (linear(e, 12 * e, rows * length) + attention(e, length, rows))

    def proj(width_in, width_out, rows):
        return linear(width_in, width_out, rows) + \
            linear(width_out, width_out, rows)

    def llm(length, rows):
        return a['layers'] * (linear(a['layer_weights'], 1, rows * length)
                              + attention(d, length, rows))

    def decoder(rows, length):
        return linear(e, dd, rows * length) + a['decoder_depth'] * (
            linear(dd, 12 * dd, rows * und) + attention(dd, und, rows))

    def diffloss(rows):
        w = a['head_width']
        return (linear(256, w, rows, input_grad=False) + linear(w, w, rows)
                + linear(dd, w, rows) + linear(c, w, rows, input_grad=False)
                + a['head_depth'] * linear(w, 5 * w, rows)
                + linear(w, 2 * w, rows) + linear(w, 2 * c, rows))

    r, i = s['recon_rows'], s['i2t_rows']
    gen = buffer + s['visible']
    recon = dict(
        vae=vae_encoder_flops(a['vae'], a['image_size'], 2 * r),
        mar_understanding=mar_encoder(und, r) + proj(e, d, r * und),
        mar_encoder=mar_encoder(gen, r) + proj(e, d, r * gen),
        llm=llm(s['recon_llm'], r) + proj(d, e, r * gen),
        mar_decoder=decoder(r, gen),
        diffloss=diffloss(a['diffusion_batch_mul'] * s['masked']))
    i2t = dict(
        vae=vae_encoder_flops(a['vae'], a['image_size'], i),
        mar_understanding=mar_encoder(und, i) + proj(e, d, i * und),
        llm=llm(s['i2t_llm'], i),
        lm_head=linear(d, a['vocab_size'], s['answers']))
    return dict(recon_parts=recon, i2t_parts=i2t, recon=sum(recon.values()),
                i2t=sum(i2t.values()),
                total=sum(recon.values()) + sum(i2t.values()))


def architecture(umm):
    """The sizes :func:`harmon_step_flops` reads, from a built HarmonUMM."""
    cfg, mar = umm.llm.config, umm.mar
    d, head = cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * head
    grid = umm.gen_tokenizer.grid(umm.image_size)
    return dict(
        hidden_size=d, layers=cfg.num_hidden_layers,
        layer_weights=d * d + 2 * d * kv + d * d
        + 3 * d * cfg.intermediate_size,
        vocab_size=cfg.vocab_size, encoder_dim=mar.encoder_dim,
        encoder_depth=len(mar.encoder_blocks),
        decoder_dim=mar.decoder_dim, decoder_depth=len(mar.decoder_blocks),
        head_width=mar.diffloss.net.cond_embed.out_features,
        head_depth=len(mar.diffloss.net.res_blocks),
        token_dim=mar.token_dim, buffer=mar.buffer_size,
        tokens=grid[0] * grid[1], image_size=umm.image_size,
        diffusion_batch_mul=mar.diffusion_batch_mul,
        vae=dict(umm.vae_config))


def step_shapes(model, batch):
    """The shapes of ``batch``'s step, derived without running it: the
    masking draws from the objective's seeds, the answer tokens from the
    chat template; the LLM lengths from the prompts' token counts."""
    umm = model.umm
    recon, i2t = batch['inputs']['recon'], batch['inputs']['i2t']
    objective = model.objectives['recon']
    grid = umm.gen_tokenizer.grid(umm.image_size)
    n, buffer = grid[0] * grid[1], umm.mar.buffer_size
    und = n + buffer
    draws = umm.mar.draw(objective.generation_seeds(recon['draw']), n)
    masked = draws.num_masked
    instructions = [objective.instruction(d) for d in recon['draw']]
    prompt = max(len(umm.image_condition(
        torch.zeros(1, und, umm.llm.config.hidden_size, device='meta'),
        [text]).mask[0])
        for text in instructions)
    conversations = [umm.conversation_tokens(turns, und)
                     for turns in i2t['conversations']]
    return dict(
        recon_rows=len(recon['draw']), i2t_rows=len(i2t['draw']),
        visible=int((n - masked).max()), masked=int(masked.sum()),
        recon_llm=prompt + buffer + int((n - masked).max()),
        i2t_llm=max(len(ids) for ids, _ in conversations),
        answers=sum(sum(t != -100 for t in labels[1:])
                    for _, labels in conversations))


def meta_step(config, batch_size, **umm_options):
    cfg = load_config(str(REPO / config), check_resources=False)
    model_cfg = cfg.model.to_dict()
    model_cfg['umm'].update(umm_options)
    batch = synthetic_batches(cfg, 1, batch_size)[0]
    model = build_weightless(model_cfg)
    shapes = step_shapes(model, batch)
    return model, shapes, meta_training_step(model, batch)


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize('variant', ['0.5b', '1.5b'])
def test_weightless_harmon_has_the_published_parameter_counts(variant):
    """Built without its folder: Qwen2.5's published count, MAR as its
    hand sum (within 0.2% of LTH14/mar's published size less its class
    embedding), the two projections and KL-16."""
    name = f"configs/reca/harmon_{variant.replace('.', '_')}.py"
    cfg = load_config(str(REPO / name), check_resources=False)
    umm = build_weightless(cfg.model.to_dict()).umm
    count = {part: sum(p.numel() for p in module.parameters())
             for part, module in umm.parts().items()}
    from reca_toolkit.models.umm.harmon import HARMON_ARCHITECTURES
    arch = HARMON_ARCHITECTURES[variant]
    d, e = arch['llm']['hidden_size'], arch['mar']['encoder_dim']
    assert count['llm'] == qwen2_params(**arch['llm']) == \
        QWEN_PUBLISHED[variant]
    assert count['lm_head'] == arch['llm']['vocab_size'] * d  # tied
    assert count['mar'] == mar_params(**arch['mar'])
    class_embedding = 1000 * e
    assert count['mar'] + class_embedding == pytest.approx(
        MAR_PUBLISHED[variant], rel=2e-3)
    assert count['proj_in'] == mlp_params(e, d)
    assert count['proj_out'] == mlp_params(d, e)
    assert count['vae'] == kl16_params(**KL16_CONFIG) == 66_456_019
    unique = sum(p.numel() for p in {id(p): p for p in
                                     umm.parameters()}.values())
    assert unique == sum(count.values()) - count['lm_head']


def test_tiny_harmon_meta_flops_match_the_formula():
    """The closed form, evaluated on shapes derived from the draws and the
    chat template, against the meta count: equal to 1e-9 (the formula
    lists every matrix product the step runs)."""
    model, shapes, step = meta_step(DEMO, 8, gradient_checkpointing=False)
    formula = harmon_step_flops(architecture(model.umm), shapes)
    assert step['llm_tokens'] == shapes['recon_rows'] * shapes[
        'recon_llm'] + shapes['i2t_rows'] * shapes['i2t_llm']
    assert step['flops'] == pytest.approx(formula['total'], rel=1e-9)


def test_tiny_harmon_meta_step_counts_what_a_real_step_does():
    """The meta pass (values kept for MAR's seeded masks) against the same
    accounting on a real CPU step: equal saved bytes and FLOPs. Eager
    attention everywhere, so both devices run the same kernels."""
    from diffusers.models.attention_processor import AttnProcessor
    cfg = load_config(str(REPO / DEMO), check_resources=False)
    model_cfg = cfg.model.to_dict()
    model_cfg['umm']['attn_implementation'] = 'eager'
    batch = synthetic_batches(cfg, 1, 4)[0]

    def eager(model):
        model.umm.gen_tokenizer.vae.set_attn_processor(AttnProcessor())
        for module in model.modules():
            if hasattr(module, 'fused_attn'):
                module.fused_attn = False
        return model

    assert_meta_step_counts_the_real_step(model_cfg, batch, eager)


def test_checkpointing_switch_reaches_the_diffusion_head():
    """``gradient_checkpointing=True`` checkpoints MAR's blocks and its
    DiffLoss blocks too, whose activations dominate Harmon's step
    (docs/performance.md), and the meta pass sees the saving."""
    cfg = load_config(str(REPO / DEMO), check_resources=False)
    batch = synthetic_batches(cfg, 1, 4)[0]
    saved = {}
    for switch in (False, True):
        model_cfg = cfg.model.to_dict()
        model_cfg['umm']['gradient_checkpointing'] = switch
        model = build_weightless(model_cfg)
        assert model.umm.mar.grad_checkpointing is switch
        assert model.umm.mar.diffloss.net.grad_checkpointing is switch
        saved[switch] = meta_training_step(model, copy.deepcopy(batch))[
            'saved_bytes']
    assert saved[True] < saved[False] / 2


UPSTREAM_BATCH = {'harmon_1_5b': 48, 'harmon_0_5b': 96}
OVERRIDE_80GB = {  # the 24 + 24 alternative written in harmon_1_5b.py
    'train_dataloader.batch_size': 48,
    'optim_wrapper.accumulative_counts': 4, 'train_cfg.max_iters': 5000,
    'param_scheduler.0.end': 500, 'param_scheduler.1.begin': 500,
    'param_scheduler.1.end': 50000}


@pytest.mark.parametrize('name, options', [
    ('harmon_1_5b', None), ('harmon_0_5b', None),
    ('harmon_1_5b', OVERRIDE_80GB)])
def test_harmon_schedules_are_the_authors_in_samples(name, options):
    """HorizonWind2004/reconstruction-alignment Harmon/configs/examples/
    reca.py: micro-batches of B single-source samples, recon, recon, i2t,
    i2t per optimizer step, warm-up 500 and cosine to 50000 micro-batches,
    5000 of them trained. Here, in samples, the same."""
    cfg = load_config(str(REPO / f'configs/reca/{name}.py'), options,
                      check_resources=False)
    b = UPSTREAM_BATCH[name]
    per_iter = cfg.train_dataloader.batch_size  # both sources
    assert cfg.train_dataloader.sampler.ratios == dict(recon=1, i2t=1)
    assert per_iter * cfg.optim_wrapper.accumulative_counts == 4 * b
    warmup, cosine = cfg.param_scheduler
    assert warmup.end * per_iter == 500 * b == cosine.begin * per_iter
    assert cosine.end * per_iter == 50000 * b
    assert cfg.train_cfg.max_iters * per_iter == 5000 * b
    assert warmup.start_factor == 1e-5 and cosine.eta_min == 0
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.lr, optimizer.betas, optimizer.weight_decay) == (
        1e-5, (0.9, 0.95), 0.02)
    # Twice upstream's gradient (see the schedule's comment): clip at 2.0.
    assert cfg.optim_wrapper.clip_grad.max_norm == 2.0
