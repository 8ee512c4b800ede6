"""Speed and memory switches change how a step is computed, not what it
computes: each gives the default's losses and gradients on the tiny real
Janus (docs/performance.md)."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from test_objectives import ALL, batches

from conftest import build_tiny_model, random_images, to_float
from reca_toolkit.models import losses


def step(model, inputs):
    """Losses and the gradient of every trainable parameter."""
    model.zero_grad(set_to_none=True)
    out = model.loss(inputs)
    sum(v for k, v in out.items() if k.startswith('loss')).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()
             if p.grad is not None}
    return {k: float(v.detach()) for k, v in out.items()}, grads


def assert_same_step(reference, other, atol):
    (ref_losses, ref_grads), (losses_, grads) = reference, other
    assert losses_ == pytest.approx(ref_losses, abs=atol)
    assert set(grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=atol, rtol=1e-4,
                                   msg=name)


@pytest.mark.parametrize('switch, atol', [
    (dict(attn_implementation='eager'), 1e-5),
    (dict(gradient_checkpointing=True), 1e-6),
    (dict(ce_chunk_size=5), 1e-5),
    (dict(compile_layers=dict(backend='aot_eager')), 1e-5),
])
def test_switch_keeps_losses_and_gradients(switch, atol):
    # Every objective: the generation head and lm_head cross-entropies.
    inputs = batches()
    reference = step(build_tiny_model(objectives=ALL), inputs)
    assert_same_step(reference,
                     step(build_tiny_model(objectives=ALL, **switch), inputs),
                     atol)


def test_head_cross_entropy_never_holds_all_logits():
    model = build_tiny_model(ce_chunk_size=5)
    rows = []
    model.umm.generator.head.register_forward_hook(
        lambda m, args, out: rows.append(out.shape[0]))
    step(model, dict(recon=batches()['recon']))
    # 2 samples x 16 codes in chunks of 5, each run again in the backward.
    assert max(rows) == 5 and sum(rows) == 2 * 32 and len(rows) == 2 * 7


def test_head_cross_entropy_is_ddp_exact(monkeypatch):
    """Ranks holding 9 and 23 of 32 positions: the mean of their losses and
    gradients (what DDP computes) is the single-process one."""
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50)
    hidden = torch.randn(32, 8, requires_grad=True)
    targets = torch.randint(0, 50, (32, ))
    full, _ = losses.cross_entropy(head(hidden), targets)
    full_grad, = torch.autograd.grad(full, hidden)

    monkeypatch.setattr(losses.dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(losses.dist, 'get_world_size', lambda: 2)
    ranks, grads = [], []
    for part in (slice(0, 9), slice(9, 32)):
        other = 32 - len(targets[part])
        monkeypatch.setattr(losses.dist, 'all_reduce',
                            lambda count, other=other: count.add_(other))
        rank_hidden = hidden[part].detach().requires_grad_()
        loss, _ = losses.head_cross_entropy(rank_hidden, head,
                                               targets[part], chunk_size=4)
        ranks.append(loss)
        grads.append(torch.autograd.grad(loss, rank_hidden)[0] / 2)
    torch.testing.assert_close(sum(ranks) / 2, full)
    torch.testing.assert_close(torch.cat(grads), full_grad)


def test_lm_head_is_never_applied_on_reconstruction_batches():
    model = build_tiny_model()
    calls, head_rows = [], []
    model.umm.lm_head.register_forward_hook(lambda *a: calls.append(1))
    model.umm.generator.head.register_forward_hook(
        lambda m, args, out: head_rows.append(args[0].shape[:-1].numel()))
    step(model, dict(recon=batches()['recon']))
    assert not calls
    assert model.umm.lm_head.weight.grad is None
    # Only the 2 x 16 code positions reach the generation head, not the
    # prompt and understanding positions before them.
    assert head_rows == [32]


def test_frozen_encoders_run_without_autograd():
    umm = build_tiny_model().umm
    pixels = to_float(random_images(2))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        features = umm.understanding_features(pixels)
        codes = umm.generation_targets(pixels)
    assert not saved, 'a frozen encoder kept activations for a backward'
    assert not features.requires_grad and not codes.requires_grad
    assert umm.encode_understanding(und_features=features).requires_grad


def test_inference_mode_features_cannot_feed_the_trainable_aligner():
    """Why frozen encoders use no_grad rather than inference_mode: the
    trainable aligner saves its input for the backward."""
    umm = build_tiny_model().umm
    with torch.inference_mode():
        features = umm.und_encoder.features(to_float(random_images(1)))
    with pytest.raises(RuntimeError, match='[Ii]nference tensors'):
        umm.und_encoder.align(features).sum().backward()


def test_fused_adamw_matches_the_default_adamw():
    inputs = dict(recon=batches()['recon'], i2t=batches()['i2t'])
    weights = []
    for options in (dict(), dict(fused=True)):
        model = build_tiny_model()
        optim_wrapper = build_optim_wrapper(model, dict(
            type='OptimWrapper',
            constructor='DecayGroupsOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.02,
                           **options)))
        for _ in range(3):
            optim_wrapper.update_params(
                sum(v for k, v in model.loss(inputs).items()
                    if k.startswith('loss')))
        weights.append(model.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, atol=1e-6,
                                   rtol=1e-5, msg=name)
