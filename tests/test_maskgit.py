"""MaskGIT generator: schedule, masked cross-entropy, confidence sampler, on
hand-computed cases."""
import math

import pytest
import torch
import torch.nn.functional as F

from reca_toolkit.models.generators.maskgit import (MaskGITDraws,
                                                    MaskGITGenerator,
                                                    cosine_mask_ratio,
                                                    gumbel_noise,
                                                    mask_by_confidence)


def test_cosine_schedule_and_masked_counts():
    assert float(cosine_mask_ratio(0.0)) == 1.0
    assert float(cosine_mask_ratio(1 / 3)) == pytest.approx(math.sqrt(3) / 2)
    gen = MaskGITGenerator(num_codes=8)
    t = torch.tensor([0.0, 0.5, 0.999, 0.9], dtype=torch.float64)
    # 10 cos(pi t / 2) = 10, 7.07, 0.016, 1.56 -> 10, 7, 1 (at least one), 2
    assert gen.num_masked(t, 10).tolist() == [10, 7, 1, 2]
    floor = MaskGITGenerator(num_codes=8, min_masking_rate=0.5)
    assert floor.num_masked(t, 10).tolist() == [10, 7, 5, 5]


def test_draws_are_per_sample_and_reproducible():
    gen = MaskGITGenerator(num_codes=8)
    both = gen.draw([3, 4], 16)
    alone = gen.draw([4], 16)
    assert torch.equal(both.ranks[1], alone.ranks[0])
    assert both.t[1] == alone.t[0]
    assert torch.equal(both.mask[1], alone.mask[0])
    assert sorted(both.ranks[0].tolist()) == list(range(16))
    assert both.mask.sum(1).tolist() == both.num_masked.tolist()
    torch.manual_seed(0)
    again = gen.draw([3, 4], 16)
    assert torch.equal(again.ranks, both.ranks)
    assert not torch.equal(gen.draw([5, 4], 16).ranks[0], both.ranks[0])


def test_loss_is_cross_entropy_on_masked_codes_only():
    gen = MaskGITGenerator(num_codes=3)
    codes = torch.tensor([[0, 1, 2, 1]])
    # ranks < 2 at positions 1 and 3: those are masked.
    draws = MaskGITDraws(torch.zeros(1, dtype=torch.float64),
                         torch.tensor([[2, 0, 3, 1]]), torch.tensor([2]))
    logits = torch.randn(1, 4, 6)
    seen = {}

    def predict(inputs, mask):
        seen.update(codes=inputs.clone(), mask=mask.clone())
        return logits

    out = gen.loss(codes, predict, draws, class_offset=2)
    assert seen['mask'].tolist() == [[False, True, False, True]]
    assert torch.equal(seen['codes'], codes)
    # The codes are classes 2..4 of the 6-way output; no shift.
    log_p = F.log_softmax(logits[0], -1)
    expected = -(log_p[1, 1 + 2] + log_p[3, 1 + 2]) / 2
    torch.testing.assert_close(out['loss'], expected)
    assert float(out['mask_ratio']) == 0.5
    # Logits at unmasked positions do not enter the loss.
    logits[0, 0] += 5.0
    logits[0, 2] -= 3.0
    torch.testing.assert_close(gen.loss(codes, predict, draws, 2)['loss'],
                               expected)


def test_mask_by_confidence_masks_the_least_confident():
    confidence = torch.tensor([[0.5, -1.0, 2.0, 0.1], [3.0, 2.0, 1.0, 0.0]])
    masked = mask_by_confidence(torch.tensor([2, 1]), confidence)
    assert masked.tolist() == [[False, True, False, True],
                               [False, False, False, True]]


def test_gumbel_noise_is_finite_and_gumbel_distributed():
    noise = gumbel_noise((20000, ), torch.Generator().manual_seed(0))
    assert torch.isfinite(noise).all()
    # Gumbel(0, 1): mean is the Euler-Mascheroni constant.
    assert float(noise.mean()) == pytest.approx(0.5772, abs=0.03)


def test_noise_annealing_showo_compounds_maskgit_is_linear():
    showo = MaskGITGenerator(num_codes=4, temperature=1.0)
    maskgit = MaskGITGenerator(num_codes=4, temperature=1.0,
                               annealing='maskgit')
    assert showo.noise_scales(4) == pytest.approx([0.75, 0.375, 0.09375, 0])
    assert maskgit.noise_scales(4) == pytest.approx([0.75, 0.5, 0.25, 0])
    with pytest.raises(ValueError, match='annealing'):
        MaskGITGenerator(num_codes=4, annealing='linear')


def peaked_logits(num_tokens, num_codes, misses, offset=0):
    """Position p puts 1 - misses[p] on code p % num_codes (spread over the
    rest) of an ``offset + num_codes``-way output."""
    probs = torch.empty(num_tokens, num_codes)
    for p, miss in enumerate(misses):
        probs[p] = miss / (num_codes - 1)
        probs[p, p % num_codes] = 1 - miss
    logits = torch.full((num_tokens, offset + num_codes), -1e4)
    logits[:, offset:] = probs.log()
    return logits


def test_sampler_keeps_the_most_confident_codes_each_step():
    """N = 4, T = 2: step 1 re-masks floor(4 cos(pi/4)) = 2 codes, the two
    least confident; step 2 re-masks max(1, min(2 - 1, 0)) = 1 but returns
    every code, as Show-o does."""
    gen = MaskGITGenerator(num_codes=3, num_inference_steps=2,
                           guidance_scale=1.0, temperature=0.0)
    misses = [1e-7, 1e-3, 1e-8, 1e-4]  # positions 1 and 3 least confident
    logits = peaked_logits(4, 3, misses, offset=5)
    calls = []

    def predict(codes, mask):
        calls.append((codes.clone(), mask.clone()))
        return logits.expand(len(codes), -1, -1)

    out = gen.sample(1, 4, predict, torch.Generator().manual_seed(0),
                     class_offset=5)
    assert out.tolist() == [[0, 1, 2, 0]]
    assert [m.tolist() for _, m in calls] == [
        [[True] * 4], [[False, True, False, True]]]
    # Step 2 sees the codes kept at step 1.
    assert calls[1][0][0, 0] == 0 and calls[1][0][0, 2] == 2


def test_guidance_combines_conditional_and_null_rows():
    gen = MaskGITGenerator(num_codes=2, num_inference_steps=3,
                           guidance_scale=6.0)
    rows = []

    def predict(codes, mask):
        rows.append(len(codes))
        # cond rows mildly prefer code 0, null rows code 1 (3 : 2 odds).
        half = len(codes) // 2
        logits = torch.zeros(len(codes), codes.shape[1], 2)
        logits[:half, :, 0] = math.log(1.5)
        logits[half:, :, 1] = math.log(1.5)
        return logits

    out = gen.sample(2, 64, predict, torch.Generator().manual_seed(0))
    assert rows == [4, 4, 4]
    # uncond + 6 (cond - uncond): code 0 by 11 log(1.5) -> p(0) > 0.98.
    assert (out == 0).float().mean() > 0.95
    unguided = gen.sample(2, 64, predict, torch.Generator().manual_seed(0),
                          guidance_scale=1.0)
    assert rows[3:] == [2, 2, 2]
    # Unguided, the conditional rows alone: p(0) = 0.6.
    assert 0.4 < (unguided == 0).float().mean() < 0.8


def test_sampling_is_seeded():
    gen = MaskGITGenerator(num_codes=5, num_inference_steps=4,
                           guidance_scale=1.0)
    logits = torch.randn(1, 9, 5)

    def predict(codes, mask):
        return logits.expand(len(codes), -1, -1)

    first = gen.sample(1, 9, predict, torch.Generator().manual_seed(3))
    again = gen.sample(1, 9, predict, torch.Generator().manual_seed(3))
    other = gen.sample(1, 9, predict, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() < 5
