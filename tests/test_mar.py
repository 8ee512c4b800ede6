"""MAR (Harmon's generator): the diffusion process against hand-computed
values, the diffusion head's guidance, masking and the encoder/decoder
layout by hand, seeded draws, row independence, gradient routing, sampling
and MAR's state-dict names."""
import math

import pytest
import torch
from torch import nn

from reca_toolkit.models.generators.diffusion_head import DiffusionHead
from reca_toolkit.models.generators.gaussian_diffusion import (
    GaussianDiffusion, spaced_timesteps)
from reca_toolkit.models.generators.masked_autoregressive import (
    MaskedAutoregressiveGenerator, MaskingDraws, mask_by_order)

GRID = (4, 4)
N = 16


def tiny(**kwargs):
    torch.manual_seed(0)
    args = dict(encoder_dim=16, encoder_depth=1, encoder_heads=2,
                decoder_dim=12, decoder_depth=1, decoder_heads=2,
                head=dict(width=16, depth=1, num_sampling_steps=4),
                token_dim=4, pos_embed_grid=4, buffer_size=2,
                diffusion_batch_mul=2, num_iter=4)
    args.update(kwargs)
    return MaskedAutoregressiveGenerator(**args)


def alpha_bar(t, steps=1000):
    return math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2


# ------------------------------------------------------------- diffusion

def test_cosine_schedule_matches_hand_values():
    d = GaussianDiffusion()
    # Betas telescope to alpha_bar(t+1) / alpha_bar(0); only the last beta
    # is capped at 0.999.
    for t in (0, 499, 998):
        expected = alpha_bar(t + 1) / alpha_bar(0)
        assert d.alphas_cumprod[t].item() == pytest.approx(expected,
                                                           rel=1e-12)
    assert d.betas[-1].item() == 0.999
    assert d.betas[-2].item() < 0.999
    assert d.alphas_cumprod[-1].item() == pytest.approx(
        alpha_bar(999) / alpha_bar(0) * 0.001, rel=1e-9)


def test_q_sample_and_posterior_on_one_dimension():
    d = GaussianDiffusion()
    t = torch.tensor([300])
    x0, xt, eps = (torch.tensor([[v]]) for v in (0.7, -0.4, 1.3))
    ab, ab_prev = (alpha_bar(301) / alpha_bar(0),
                   alpha_bar(300) / alpha_bar(0))
    beta = 1 - ab / ab_prev
    assert d.q_sample(x0, t, eps).item() == pytest.approx(
        math.sqrt(ab) * 0.7 + math.sqrt(1 - ab) * 1.3, rel=1e-6)
    # Gaussian conditioning of x_{t-1} ~ q(. | x_0) on x_t = sqrt(1 - beta)
    # x_{t-1} + sqrt(beta) noise.
    precision = 1 / (1 - ab_prev) + (1 - beta) / beta
    mean = (math.sqrt(ab_prev) * 0.7 / (1 - ab_prev)
            + math.sqrt(1 - beta) * -0.4 / beta) / precision
    got_mean, got_var, _ = d.q_posterior(x0, xt, t)
    assert got_mean.item() == pytest.approx(mean, rel=1e-5)
    assert got_var.item() == pytest.approx(1 / precision, rel=1e-5)


def test_respacing_keeps_even_steps_and_product_betas():
    assert spaced_timesteps(1000, 4) == [0, 333, 666, 999]
    assert spaced_timesteps(1000, '100')[:3] == [0, 10, 20]
    assert spaced_timesteps(1000, '2,3') == [0, 499, 500, 750, 999]
    base, d = GaussianDiffusion(), GaussianDiffusion(timestep_respacing=4)
    assert d.timestep_map.tolist() == [0, 333, 666, 999]
    previous = 1.0
    for k, step in enumerate(d.timestep_map.tolist()):
        kept = base.alphas_cumprod[step].item()
        assert d.betas[k].item() == pytest.approx(1 - kept / previous,
                                                  rel=1e-12)
        assert d.alphas_cumprod[k].item() == pytest.approx(kept, rel=1e-12)
        previous = kept


def test_training_losses_bound_is_finite_and_non_negative():
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(64, 4, generator=g) * 2 - 1
    t = torch.randint(1000, (64,), generator=g)
    t[:8] = 0  # the decoder-NLL branch
    noise = torch.randn(64, 4, generator=g)
    seen = []

    def model_fn(x, model_t):
        seen.append(model_t)
        return torch.tanh(torch.cat([x, x], 1))

    terms = d.training_losses(model_fn, x0, t, noise)
    assert torch.equal(seen[0], t)
    assert terms['vb'].isfinite().all() and (terms['vb'] >= 0).all()
    assert torch.allclose(terms['loss'], terms['mse'] + terms['vb'])
    assert torch.allclose(terms['mse'], (noise - torch.tanh(
        d.q_sample(x0, t, noise))).pow(2).mean(1))


def test_sampler_uses_original_timesteps_and_its_generator_only():
    d = GaussianDiffusion(timestep_respacing=5)
    seen = []

    def model_fn(x, t):
        seen.append(t[0].item())
        return torch.cat([-0.1 * x, torch.zeros_like(x)], 1)

    def run(seed, temperature=1.0):
        return d.p_sample_loop(model_fn, (3, 2), noise=torch.ones(3, 2),
                               temperature=temperature,
                               generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    assert torch.equal(run(1, temperature=0), run(2, temperature=0))
    assert seen[:5] == list(reversed(d.timestep_map.tolist()))


# ------------------------------------------------------------------ head

def test_head_loss_per_token_and_guidance_form():
    torch.manual_seed(0)
    head = DiffusionHead(token_dim=4, cond_dim=6, width=8, depth=2,
                         num_sampling_steps=3)
    cond = torch.randn(5, 6)
    loss = head.loss(torch.randn(5, 4), cond, torch.arange(5) * 200,
                     torch.randn(5, 4))
    assert loss.shape == (5,)
    for p in head.parameters():  # leave MAR's zero initialisation
        nn.init.normal_(p, std=0.3)

    def sample(c, scale):
        return head.sample(c, 1.0, scale, num_sampling_steps=3,
                           generator=torch.Generator().manual_seed(3))

    # Identical halves: guidance is a no-op on the noise prediction.
    assert torch.allclose(sample(torch.cat([cond, cond]), 4.0),
                          sample(cond, 1.0), atol=1e-6)
    guided = sample(torch.cat([cond, torch.randn(5, 6)]), 4.0)
    assert guided.shape == (5, 4) and guided.isfinite().all()


# --------------------------------------------------- masking and layout

def test_masking_by_hand():
    orders = torch.tensor([[3, 0, 5, 1, 4, 2], [3, 0, 5, 1, 4, 2]])
    draws = MaskingDraws(orders, torch.tensor([0.5, 0.7], dtype=torch.float64),
                         None, None)
    assert draws.num_masked.tolist() == [3, 5]  # ceil(3.0), ceil(4.2)
    assert draws.mask.int().tolist() == [[1, 0, 0, 1, 0, 1],
                                         [1, 1, 0, 1, 1, 1]]
    assert mask_by_order(orders[:1], torch.tensor([1])).int().tolist() == \
        [[0, 0, 0, 1, 0, 0]]


def test_encoder_keeps_buffer_first_then_visible_tokens():
    model = tiny(encoder_depth=0, decoder_depth=0, pos_embed_grid=2)
    tokens = torch.randn(1, 4, 4)
    mask = torch.tensor([[0., 1., 0., 1.]])
    x = model.encode(tokens, mask, (2, 2))
    buffer = model.fake_latent.expand(2, -1)
    rows = torch.cat([buffer, model.z_proj(tokens[0])])
    rows = model.z_proj_ln(rows + model.encoder_pos_embed_learned[0])
    expected = model.encoder_norm(rows[[0, 1, 2, 4]])  # buffer, tokens 0, 2
    assert torch.allclose(x[0], expected, atol=1e-6)

    z = model.decode(x, mask, (2, 2))
    full = model.decoder_embed(x[0])
    mask_token = model.mask_token[0, 0]
    full = torch.stack([full[0], full[1], full[2], mask_token, full[3],
                        mask_token]) + model.decoder_pos_embed_learned[0]
    expected = (model.decoder_norm(full)[2:]
                + model.diffusion_pos_embed_learned[0])
    assert torch.allclose(z[0], expected, atol=1e-6)


def test_pos_embed_interpolation():
    model = tiny()
    table = model.encoder_pos_embed_learned
    assert model._pos_embed(table, GRID) is table
    wide = model._pos_embed(table, (8, 6))
    assert wide.shape == (1, 2 + 48, 16)
    assert torch.equal(wide[:, :2], table[:, :2])  # the buffer as it is
    flat = torch.ones(1, 16, 3)
    assert torch.allclose(model._pos_embed(flat, (7, 5)), torch.ones(1, 35, 3))


def test_mask_ratios_follow_the_truncated_normal():
    model = tiny(token_dim=1, diffusion_batch_mul=1)
    ratios = model.draw(range(3000), num_tokens=2).ratios
    assert ratios.min() >= 0.7 and ratios.max() <= 1.0
    alpha = (0.7 - 1) / 0.25

    def pdf(x):
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def cdf(x):
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    mean = 1 + 0.25 * (pdf(alpha) - pdf(0)) / (cdf(0) - cdf(alpha))
    assert ratios.mean().item() == pytest.approx(mean, abs=0.01)


# -------------------------------------------------------- loss and draws

def test_same_seeds_same_draws_and_loss():
    model = tiny()
    tokens = torch.randn(2, N, 4)
    a, b = model.draw([5, 6], N), model.draw([5, 6], N)
    for field in ('orders', 'ratios', 'timesteps', 'noise'):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert a.timesteps.shape == (2, N, 2) and a.noise.shape == (2, N, 2, 4)
    assert torch.equal(model.loss(tokens, GRID, None, a)['loss'],
                       model.loss(tokens, GRID, None, b)['loss'])


def test_token_losses_are_the_loss_per_masked_token():
    model = tiny()
    tokens = torch.randn(2, N, 4)
    draws = model.draw([3, 4], N)
    mask, mul = draws.mask, model.diffusion_batch_mul
    losses = model.token_losses(tokens, GRID, None, draws)
    assert losses.shape == (int(mask.sum()), mul)
    assert torch.equal(model.loss(tokens, GRID, None, draws)['loss'],
                       losses.sum() / losses.numel())
    # Row-major: the last row is the second sample's last masked token.
    z = model.decode(model.encode(tokens, mask, GRID), mask, GRID)
    b, n = mask.nonzero()[-1]
    by_hand = model.diffloss.loss(
        tokens[b, n].expand(mul, -1), z[b, n].expand(mul, -1),
        draws.timesteps[b, n], draws.noise[b, n])
    assert torch.allclose(losses[-1], by_hand, atol=1e-6)
    # Draws of a caller's own: every token masked, five scores each.
    own = MaskingDraws(draws.orders, torch.ones(2, dtype=torch.float64),
                       torch.full((2, N, 5), 500), torch.randn(2, N, 5, 4))
    assert model.token_losses(tokens, GRID, None, own).shape == (2 * N, 5)


def test_rows_with_different_masked_counts_are_independent():
    model = tiny()
    tokens = torch.randn(2, N, 4)
    draws = model.draw([0, 1], N)
    counts = draws.num_masked
    assert counts[0] != counts[1]  # these seeds pad the encoder sequence
    x = model.encode(tokens, draws.mask, GRID)
    for row in range(2):
        alone = model.encode(tokens[row:row + 1], draws.mask[row:row + 1],
                             GRID)
        assert torch.allclose(x[row, :alone.shape[1]], alone[0], atol=1e-5)

    def loss(rows):
        part = MaskingDraws(*(getattr(draws, f)[rows] for f in
                              ('orders', 'ratios', 'timesteps', 'noise')))
        return model.loss(tokens[rows], GRID, None, part)['loss']

    scores = counts.double() * model.diffusion_batch_mul
    expected = (loss([0]) * scores[0] + loss([1]) * scores[1]) / scores.sum()
    assert loss([0, 1]).item() == pytest.approx(expected.item(), rel=1e-5)


def test_batch_mode_shares_the_first_samples_ratio():
    per_sample, per_batch = tiny(), tiny(mask_ratio_per='batch')
    a, b = per_sample.draw([1, 2, 3], N), per_batch.draw([1, 2, 3], N)
    assert (b.ratios == a.ratios[0]).all()
    assert torch.equal(a.noise, b.noise) and torch.equal(a.orders, b.orders)


def test_gradient_reaches_every_part_and_the_middle():
    model = tiny(grad_checkpointing=True)
    final = model.diffloss.net.final_layer  # leave MAR's zero output init
    for layer in (final.linear, final.adaLN_modulation[-1]):
        nn.init.normal_(layer.weight, std=0.1)
    llm = nn.Linear(16, 16)
    seen = []

    def middle(x, valid):
        seen.append(valid)
        return x + llm(x) * valid[..., None]

    model.loss(torch.randn(2, N, 4), GRID, middle,
               model.draw([0, 1], N))['loss'].backward()
    assert not seen[0].all()  # rows differ in visible count
    for part in (model.z_proj, model.encoder_blocks, model.decoder_blocks,
                 model.diffloss.net.res_blocks, llm):
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in part.parameters())
    for param in (model.fake_latent, model.mask_token,
                  model.encoder_pos_embed_learned,
                  model.diffusion_pos_embed_learned):
        assert param.grad.abs().sum() > 0


# ---------------------------------------------------------------- sample

def test_sampling_is_finite_reproducible_and_guided():
    model = tiny()
    rows = []

    def middle(x, valid):
        rows.append(len(x))
        assert valid.all()
        return x

    def run(seed, **kwargs):
        return model.sample(2, GRID, middle,
                            torch.Generator().manual_seed(seed),
                            num_sampling_steps=3, **kwargs)

    plain = run(0, guidance_scale=1.0)
    assert plain.shape == (2, N, 4) and plain.isfinite().all()
    assert rows == [2] * 4
    assert torch.equal(plain, run(0, guidance_scale=1.0))
    assert not torch.equal(plain, run(1, guidance_scale=1.0))
    rows.clear()
    guided = run(0, guidance_scale=3.0, cfg_schedule='linear')
    assert guided.shape == (2, N, 4) and guided.isfinite().all()
    assert rows == [4] * 4
    wide = model.sample(1, (5, 6), None, torch.Generator().manual_seed(0),
                        num_iter=3, num_sampling_steps=2)
    assert wide.shape == (1, 30, 4)


# ------------------------------------------------------- checkpoint names

def mar_keys(encoder_depth, decoder_depth, head_depth):
    """MAR's (LTH14/mar) state-dict names, minus ``class_emb``."""
    def affine(name):
        return [f'{name}.weight', f'{name}.bias']

    block = [k for n in ('norm1', 'attn.qkv', 'attn.proj', 'norm2',
                         'mlp.fc1', 'mlp.fc2') for k in affine(n)]
    keys = ['fake_latent', 'mask_token', 'encoder_pos_embed_learned',
            'decoder_pos_embed_learned', 'diffusion_pos_embed_learned']
    for name in ('z_proj', 'z_proj_ln', 'encoder_norm', 'decoder_embed',
                 'decoder_norm'):
        keys += affine(name)
    keys += [f'encoder_blocks.{i}.{k}' for i in range(encoder_depth)
             for k in block]
    keys += [f'decoder_blocks.{i}.{k}' for i in range(decoder_depth)
             for k in block]
    net = ['time_embed.mlp.0', 'time_embed.mlp.2', 'cond_embed', 'input_proj',
           'final_layer.linear', 'final_layer.adaLN_modulation.1']
    net += [f'res_blocks.{i}.{n}' for i in range(head_depth)
            for n in ('in_ln', 'mlp.0', 'mlp.2', 'adaLN_modulation.1')]
    keys += [k for n in net for k in affine(f'diffloss.net.{n}')]
    return keys


def test_state_dict_has_mar_names_and_loads_strict():
    model = tiny(encoder_depth=2, decoder_depth=1,
                 head=dict(width=16, depth=3))
    state = model.state_dict()
    assert sorted(state) == sorted(mar_keys(2, 1, 3))
    assert model.encoder_dim == 16 and model.decoder_dim == 12
    assert state['fake_latent'].shape == (1, 16)
    assert state['mask_token'].shape == (1, 1, 12)
    assert state['encoder_pos_embed_learned'].shape == (1, 2 + 16, 16)
    assert state['diffusion_pos_embed_learned'].shape == (1, 16, 12)
    assert state['diffloss.net.final_layer.linear.weight'].shape == (8, 16)
    checkpoint = {f'mar.{k}': torch.randn_like(v) for k, v in state.items()}
    other = tiny(encoder_depth=2, decoder_depth=1,
                 head=dict(width=16, depth=3))
    other.load_state_dict({k[len('mar.'):]: v for k, v in checkpoint.items()},
                          strict=True)
    assert torch.equal(other.fake_latent, checkpoint['mar.fake_latent'])
