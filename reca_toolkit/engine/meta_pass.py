"""One training forward and backward on the meta device: FLOPs, activation
memory and LLM tokens of a step, for any model size, in seconds.

Meta tensors have shapes and dtypes but no data. Two things of a real GPU
step need care (research/models.md section 1.4.5):

* transformers decides whether it may skip the causal mask by reading the
  padding mask's values; on meta it always builds the mask, as a GPU run
  with padded prompts does.
* PyTorch runs scaled-dot-product attention on meta through its math
  fallback, which keeps the ``T x T`` attention probabilities for the
  backward; a GPU runs the memory-efficient kernel, which keeps the output
  and a log-sum-exp. On meta it is routed to that kernel's op, so saved
  memory and FLOPs are those of the GPU step.
"""
import contextlib

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode


def _efficient_sdpa(original):

    def attention(query, key, value, attn_mask=None, dropout_p=0.0,
                  is_causal=False, scale=None, enable_gqa=False):
        if not query.is_meta:
            return original(query, key, value, attn_mask=attn_mask,
                            dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa)
        bias = None
        if attn_mask is not None:
            # Only the shape matters on meta; the values would be 0 / -inf.
            bias = torch.zeros(attn_mask.shape, dtype=query.dtype,
                               device='meta').expand(
                                   query.shape[0], query.shape[1],
                                   query.shape[2], key.shape[2])
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, bias, torch.is_grad_enabled(), dropout_p,
            is_causal, scale=scale)[0]

    return attention


@contextlib.contextmanager
def meta_attention():
    """Attention on meta tensors as the GPU computes it (module docstring).
    """
    import transformers.masking_utils as masking
    ignore_mask = masking._ignore_causal_mask_sdpa
    sdpa = F.scaled_dot_product_attention
    masking._ignore_causal_mask_sdpa = lambda *args, **kwargs: False
    F.scaled_dot_product_attention = _efficient_sdpa(sdpa)
    try:
        yield
    finally:
        masking._ignore_causal_mask_sdpa = ignore_mask
        F.scaled_dot_product_attention = sdpa


def to_meta(data):
    """Floating-point tensors of a batch (pixels, cached features) -> meta;
    integer tensors (codes, indices) stay, as the code reads their values.
    """
    if isinstance(data, dict):
        return {k: to_meta(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(to_meta(v) for v in data)
    if isinstance(data, torch.Tensor) and data.is_floating_point():
        return torch.empty_like(data, device='meta')
    return data


class SavedTensors:
    """Counts the bytes autograd keeps for the backward, each storage once
    (a tensor saved by several ops, or views of one tensor, count once);
    parameters are not activations and are left out."""

    def __init__(self, model):
        self.params = {p.untyped_storage()._cdata for p in model.parameters()}
        self.storages = {}

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in self.params:
            self.storages[storage._cdata] = storage
        return tensor

    @property
    def total_bytes(self):
        return sum(s.nbytes() for s in self.storages.values())

    @property
    def largest_bytes(self):
        return max((s.nbytes() for s in self.storages.values()), default=0)


def llm_token_counter(model):
    """Counts the positions the UMM's backbone processes; returns the count
    dict and the hook handle."""
    tokens = dict(count=0)

    def hook(module, args, kwargs):
        embeds = kwargs.get('inputs_embeds')
        if embeds is not None:
            tokens['count'] += embeds.shape[0] * embeds.shape[1]

    handle = model.umm.backbone.register_forward_pre_hook(
        hook, with_kwargs=True)
    return tokens, handle


def meta_training_step(model, batch):
    """Forward and backward of ``model`` (meta parameters) on ``batch``.

    Returns a dict: ``flops`` (forward + backward, a multiply-add counted
    as 2), ``saved_bytes`` and ``largest_saved_bytes`` (what autograd keeps
    from the forward for the backward), ``llm_tokens``.
    """
    data = model.data_preprocessor(batch, training=True)
    data = dict(data, inputs=to_meta(data['inputs']))
    saved = SavedTensors(model)
    tokens, handle = llm_token_counter(model)
    counter = FlopCounterMode(display=False)
    try:
        with meta_attention(), counter:
            with torch.autograd.graph.saved_tensors_hooks(saved.pack,
                                                          lambda t: t):
                losses = model(**data, mode='loss')
            loss, _ = model.parse_losses(losses)
            result = dict(saved_bytes=saved.total_bytes,
                          largest_saved_bytes=saved.largest_bytes)
            loss.backward()
    finally:
        handle.remove()
    return dict(result, flops=counter.get_total_flops(),
                llm_tokens=tokens['count'])
