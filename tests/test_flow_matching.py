"""FlowMatchingGenerator: the flow-matching loss and sampler, by hand."""
import math

import pytest
import torch

from reca_toolkit.models.generators.flow_matching import (
    FlowDraws, FlowMatchingGenerator, guide, interpolate, shift_times,
    velocity_target)


def test_interpolation_and_target_by_hand():
    x0 = torch.tensor([[2.0, -1.0], [0.5, 4.0]])
    noise = torch.tensor([[1.0, 1.0], [-2.0, 0.0]])
    t = torch.tensor([0.25, 1.0])
    # (1 - t) x0 + t noise, per row
    expected = torch.tensor([[0.75 * 2 + 0.25, 0.75 * -1 + 0.25],
                             [-2.0, 0.0]])
    torch.testing.assert_close(interpolate(x0, noise, t), expected)
    torch.testing.assert_close(interpolate(x0, noise, torch.zeros(2)), x0)
    torch.testing.assert_close(velocity_target(x0, noise),
                               torch.tensor([[-1.0, 2.0], [-2.5, -4.0]]))


def test_shift_and_guidance_by_hand():
    t = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(shift_times(t, 3.0),
                               torch.tensor([0.0, 1.5 / 2.0, 1.0]))
    assert shift_times(t, 1.0) is t
    cond, uncond = torch.tensor([3.0]), torch.tensor([1.0])
    torch.testing.assert_close(guide(cond, uncond, 4.5), torch.tensor([10.0]))
    torch.testing.assert_close(guide(cond, uncond, 1.0), cond)


def test_uniform_times_lie_on_the_training_grid():
    gen = FlowMatchingGenerator(num_train_timesteps=1000)
    t = gen.times(torch.tensor([0.0, 0.0004, 0.001, 0.5, 0.9999999]))
    torch.testing.assert_close(
        t, torch.tensor([0.001, 0.001, 0.002, 0.501, 1.0]))
    continuous = FlowMatchingGenerator(discrete=False).times(
        torch.tensor([0.0, 0.3]))
    torch.testing.assert_close(continuous, torch.tensor([0.0, 0.3]))


def test_logit_normal_times_with_a_shift():
    gen = FlowMatchingGenerator(timestep_sampling='logit_normal',
                                logit_mean=0.0, logit_std=1.0, shift=3.0)
    s = 1 / (1 + math.exp(-1.0))  # sigmoid(1)
    torch.testing.assert_close(
        gen.times(torch.tensor([0.0, 1.0])),
        torch.tensor([0.75, 3 * s / (1 + 2 * s)]))


def test_time_distributions_over_many_seeds():
    seeds = range(4000)
    uniform = FlowMatchingGenerator().draw(seeds, (1, ))
    assert abs(uniform.t.mean() - 0.5) < 0.02
    assert abs(uniform.t.var() - 1 / 12) < 0.005
    assert uniform.t.min() > 0 and uniform.t.max() <= 1
    logit = FlowMatchingGenerator(timestep_sampling='logit_normal').draw(
        seeds, (1, ))
    logits = torch.logit(logit.t.double())
    assert abs(logits.mean()) < 0.06 and abs(logits.std() - 1) < 0.04
    assert abs(uniform.noise.std() - 1) < 0.04


def test_draws_come_from_the_seeds_alone():
    gen = FlowMatchingGenerator()
    torch.manual_seed(0)
    first = gen.draw([3, 4, 5], (2, 4, 4))
    torch.manual_seed(1)  # the global RNG does not matter
    again = gen.draw([3, 4, 5], (2, 4, 4))
    assert torch.equal(first.t, again.t)
    assert torch.equal(first.noise, again.noise)
    # a sample's draws do not depend on its batch
    alone = gen.draw([4], (2, 4, 4))
    assert torch.equal(alone.t[0], first.t[1])
    assert torch.equal(alone.noise[0], first.noise[1])
    assert not torch.equal(first.noise[0], first.noise[1])


def test_loss_is_the_velocity_mse_of_the_denoiser():
    gen = FlowMatchingGenerator()
    x0 = torch.randn(3, 2, 4, 4)
    draws = gen.draw([1, 2, 3], x0.shape[1:])
    seen = {}

    def denoiser(x_t, timesteps):
        seen.update(x_t=x_t, timesteps=timesteps)
        return torch.zeros_like(x_t)

    loss = gen.loss(x0, denoiser, draws)['loss']
    torch.testing.assert_close(seen['x_t'],
                               interpolate(x0, draws.noise, draws.t))
    torch.testing.assert_close(seen['timesteps'], draws.t * 1000)
    torch.testing.assert_close(loss, ((draws.noise - x0) ** 2).mean())

    def oracle(x_t, timesteps):
        return draws.noise - x0

    assert float(gen.loss(x0, oracle, draws)['loss']) == 0
    # seeds instead of draws give the same loss
    torch.testing.assert_close(gen.loss(x0, denoiser, [1, 2, 3])['loss'],
                               loss)


def oracle_for(x0, steps):
    """The exact velocity toward ``x0`` from any ``x_t``:
    ``(x_t - x0) / t``; ``steps`` records the timesteps it saw."""

    def denoiser(x_t, timesteps):
        steps.append(timesteps.clone())
        rows = len(x_t) // len(x0)
        t = (timesteps / 1000).reshape(-1, 1, 1, 1)
        return (x_t - x0.repeat(rows, 1, 1, 1)) / t

    return denoiser


@pytest.mark.parametrize('scheduler', ['dpm_solver', 'euler'])
@pytest.mark.parametrize('shift', [1.0, 3.0])
def test_sampler_recovers_x0_for_an_oracle(scheduler, shift):
    gen = FlowMatchingGenerator(scheduler=scheduler, sampling_shift=shift,
                                num_inference_steps=20, guidance_scale=1.0)
    x0 = torch.randn(2, 3, 4, 4)
    steps = []
    out = gen.sample(x0.shape, oracle_for(x0, steps),
                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)
    assert len(steps) == 20 and steps[0][0] > steps[-1][0] > 0
    assert all(len(s) == 2 for s in steps)


def test_guided_sampling_sees_cond_then_null_rows():
    gen = FlowMatchingGenerator(num_inference_steps=4, guidance_scale=4.5)
    x0 = torch.randn(2, 1, 2, 2)
    rows_seen = []

    def denoiser(x_t, timesteps):
        rows_seen.append(len(x_t))
        # both halves see the same latents
        assert torch.equal(x_t[:2], x_t[2:])
        cond = torch.ones_like(x_t[:2])
        return torch.cat([cond, torch.zeros_like(cond)])

    out = gen.sample(x0.shape, denoiser, noise=torch.zeros(2, 1, 2, 2))
    assert rows_seen == [4] * 4
    # velocity 4.5 everywhere (0 + 4.5 * (1 - 0)); from x = 0 at the first
    # sigma (DPM-Solver's flow sigmas start at 1 - 1/N) to 0 the flow
    # moves by -4.5 * sigma_0
    scheduler = gen.build_scheduler()
    scheduler.set_timesteps(4)
    start = float(scheduler.sigmas[0])
    assert 0.99 < start <= 1
    torch.testing.assert_close(out, torch.full_like(out, -4.5 * start),
                               rtol=1e-4, atol=1e-4)


def test_sampling_is_seeded():
    gen = FlowMatchingGenerator(num_inference_steps=3, guidance_scale=1.0)

    def denoiser(x_t, timesteps):
        return 0.1 * x_t

    one = gen.sample((1, 2, 2, 2), denoiser, torch.Generator().manual_seed(5))
    two = gen.sample((1, 2, 2, 2), denoiser, torch.Generator().manual_seed(5))
    three = gen.sample((1, 2, 2, 2), denoiser,
                       torch.Generator().manual_seed(6))
    assert torch.equal(one, two) and not torch.equal(one, three)


def test_bad_settings_name_the_choices():
    with pytest.raises(ValueError, match='uniform'):
        FlowMatchingGenerator(timestep_sampling='cosine')
    with pytest.raises(ValueError, match='dpm_solver'):
        FlowMatchingGenerator(scheduler='ddim')
    assert isinstance(FlowMatchingGenerator().draw([0], (1, )), FlowDraws)


def test_uniform_sigma_grid_is_bagels_shifted_linspace():
    """BAGEL's sampler: t = linspace(1, 0, N) shifted, N - 1 Euler steps
    x <- x - v * (t_i - t_{i+1}) (ByteDance-Seed/Bagel modeling/bagel/
    bagel.py generate_image), by hand for a constant velocity."""
    from reca_toolkit.models.generators.flow_matching import shift_times
    gen = FlowMatchingGenerator(scheduler='euler', sampling_shift=3.0,
                                sigma_grid='uniform', num_inference_steps=4,
                                guidance_scale=1.0)
    seen = []

    def denoiser(x_t, timesteps):
        seen.append(float(timesteps[0]) / 1000)
        return torch.ones_like(x_t)

    out = gen.sample((1, 2), denoiser, noise=torch.zeros(1, 2))
    grid = shift_times(torch.linspace(1, 0, 5, dtype=torch.float64), 3.0)
    assert seen == pytest.approx(grid[:-1].tolist(), abs=1e-6)
    torch.testing.assert_close(out, torch.full((1, 2), -1.0))
    with pytest.raises(ValueError, match='euler'):
        FlowMatchingGenerator(sigma_grid='uniform')


def test_cfg_interval_and_renorm_by_hand():
    """Outside the interval the conditional prediction alone; inside,
    guidance, then (renorm) scaled to the conditional norm at most."""
    from reca_toolkit.models.generators.flow_matching import renorm
    cond = torch.tensor([[3.0, 4.0]])  # norm 5
    guided = torch.tensor([[6.0, 8.0]])  # norm 10
    torch.testing.assert_close(renorm(guided, cond, 'global'), cond)
    torch.testing.assert_close(renorm(guided, cond, 'global', 0.8),
                               0.8 * guided)
    # Two samples: 'global' (upstream's packed sequence) takes one factor,
    # sqrt(25 + 25) / sqrt(100 + 25) for both; 'sample' one each (1/2, 1).
    conds = torch.tensor([[3.0, 4.0], [0.0, 5.0]])
    guideds = torch.tensor([[6.0, 8.0], [0.0, 5.0]])
    torch.testing.assert_close(renorm(guideds, conds, 'global'),
                               guideds * (50 / 125) ** 0.5)
    torch.testing.assert_close(renorm(guideds, conds, 'sample'), conds)
    small = torch.tensor([[0.3, 0.4]])
    assert torch.equal(renorm(small, cond, 'channel'), small)  # never up
    gen = FlowMatchingGenerator(scheduler='euler', sigma_grid='uniform',
                                num_inference_steps=4, guidance_scale=3.0,
                                cfg_interval=(0.5, 1.0))
    used = []

    def denoiser(x_t, timesteps):
        half = len(x_t) // 2
        return torch.cat([torch.ones_like(x_t[:half]),
                          torch.zeros_like(x_t[half:])])

    def record(x_t, timesteps):
        out = denoiser(x_t, timesteps)
        used.append(float(timesteps[0]) / 1000)
        return out

    out = gen.sample((1, 1), record, noise=torch.zeros(1, 1))
    # Steps at t = 1, 0.75 (guided: velocity 3) and 0.5, 0.25 (velocity 1),
    # each 0.25 long.
    assert used == pytest.approx([1.0, 0.75, 0.5, 0.25])
    torch.testing.assert_close(out, torch.tensor([[-(3 * 0.5 + 0.5)]]))


def test_global_renorm_shares_a_factor_per_group_of_samples():
    """Four samples, conditional velocity 1, guided 2, 2, 1.5, 1.5: one
    factor over all (sqrt(4 / 12.5)); in groups of 2, upstream's packed
    calls, 1/2 for the first pair and 2/3 for the second."""
    def denoiser(x_t, timesteps):
        cond = torch.ones_like(x_t[:4])
        null = torch.tensor([[-1.0], [-1.0], [0.0], [0.0]]).reshape(
            cond.shape)
        return torch.cat([cond, null])

    def velocity(**options):
        gen = FlowMatchingGenerator(
            scheduler='euler', sigma_grid='uniform', num_inference_steps=1,
            guidance_scale=1.5, cfg_renorm='global', **options)
        # guided = null + 1.5 (cond - null): 2 where null = -1, 1.5 where 0
        return -gen.sample((4, 1), denoiser, noise=torch.zeros(4, 1))[:, 0]

    guided = torch.tensor([2.0, 2.0, 1.5, 1.5])
    torch.testing.assert_close(
        velocity(), guided * (4 / guided.square().sum()) ** 0.5)
    torch.testing.assert_close(velocity(cfg_renorm_group=2),
                               torch.tensor([1.0, 1.0, 1.0, 1.0]))


def test_serial_guidance_over_two_null_branches_by_hand():
    """Two scales: conditional, text-null and image-null rows; g = cond,
    g = null1 + 4 (g - null1), g = null2 + 1.5 (g - null2); 'text_channel'
    rescales after the first branch only."""
    values = torch.tensor([[2.0], [1.0], [0.5]])  # cond, null1, null2

    def denoiser(x_t, timesteps):
        return values.repeat_interleave(len(x_t) // 3, 0).reshape(
            x_t.shape)

    for renorm_mode, first in ((None, 1 + 4 * (2 - 1)),
                               ('text_channel', 2.0)):
        gen = FlowMatchingGenerator(scheduler='euler', sigma_grid='uniform',
                                    num_inference_steps=1,
                                    guidance_scale=(4.0, 1.5),
                                    cfg_renorm=renorm_mode)
        out = gen.sample((1, 1), denoiser, noise=torch.zeros(1, 1))
        velocity = 0.5 + 1.5 * (first - 0.5)
        torch.testing.assert_close(out, torch.tensor([[-velocity]]))
