"""One training forward and backward on the meta device: FLOPs, activation
memory and LLM tokens of a step, for any model size, in seconds.

Meta tensors have shapes and dtypes but no data. Three things of a real GPU
step need care (research/models.md section 1.4.5):

* transformers decides whether it may skip the causal mask by reading the
  padding mask's values; on meta it always builds the mask, as a GPU run
  with padded prompts does.
* PyTorch runs scaled-dot-product attention on meta through its math
  fallback, which keeps the ``T x T`` attention probabilities for the
  backward; a GPU runs the memory-efficient kernel, which keeps the output
  and a log-sum-exp. On meta it is routed to that kernel's op, so saved
  memory and FLOPs are those of the GPU step.
* a model may read values that its shapes depend on (MAR keeps only the
  tokens its seeded mask ratios leave visible and reads how many:
  ``.item()``, boolean indexing). :class:`MetaValues` keeps the real values
  of every meta tensor that derives only from constants, the batch's
  integers and real buffers, so such reads work; whatever derives from a
  weight stays value-less.
"""
import contextlib

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten
from torch.utils.flop_counter import flop_registry
from torch.utils.weak import WeakIdKeyDictionary


def _efficient_sdpa(original):

    def attention(query, key, value, attn_mask=None, dropout_p=0.0,
                  is_causal=False, scale=None, enable_gqa=False):
        if not query.is_meta:
            return original(query, key, value, attn_mask=attn_mask,
                            dropout_p=dropout_p, is_causal=is_causal,
                            scale=scale, enable_gqa=enable_gqa)
        if query.dim() == 3:
            # ``[B, L, D]`` (one head, as convolutional autoencoders'
            # attention blocks call it): the fused kernel takes 4-D.
            return attention(query[:, None], key[:, None], value[:, None],
                             attn_mask, dropout_p, is_causal, scale,
                             enable_gqa)[:, 0]
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


aten = torch.ops.aten
# Ops whose first argument gives only a shape and dtype, not values.
METADATA_ONLY = {aten.new_zeros.default, aten.new_ones.default,
                 aten.new_full.default, aten.new_empty.default,
                 aten.zeros_like.default, aten.ones_like.default,
                 aten.full_like.default, aten.empty_like.default}
# torch.utils.flop_counter's formulas, by op overload packet.
FLOP_FORMULAS = flop_registry
META = torch.device('meta')
HOST = torch.device('cpu')


class MetaValues(TorchDispatchMode):
    """Real values alongside the meta tensors that derive from constants,
    real tensors (the batch's integers, buffers) and other such tensors;
    and the FLOP count of the ops.

    Every op on meta runs as usual (its shapes and aliasing are the meta
    op's); when all its inputs have values, it also runs on their host
    copies, and its outputs keep the result if they have at most
    ``max_numel`` elements. Reading a value (``.item()``) and ops whose
    output shape depends on values (boolean indexing, ``nonzero``) then
    work; an op over a value-less tensor that needs such values gets the
    host copies of its integer and boolean arguments (meta tensors index
    with host indices). Random ops give no values; an in-place op that
    cannot update a value drops it, and those of every view of the same
    storage.

    FLOPs (:attr:`flops`) are counted by ``torch.utils.flop_counter``'s
    rules -- its formulas, and its decomposition of ops it has none for --
    over the ops the model runs, not the host copies: the total
    ``FlopCounterMode`` gives, without its per-module attribution, which
    costs as much as the rest of the pass.
    """

    def __init__(self, max_numel=2**24):
        super().__init__()
        self.max_numel = max_numel
        self.values = WeakIdKeyDictionary()
        self.stale = set()
        self.flops = 0
        self._decomposable = {}

    def value(self, tensor):
        """The host value of ``tensor``: itself off meta, else the tracked
        one, or None."""
        if not tensor.is_meta:
            return tensor
        if tensor.untyped_storage()._cdata in self.stale:
            return None
        return self.values.get(tensor)

    def _host(self, arg, metadata=False, index_only=False):
        if isinstance(arg, torch.device) and arg.type == 'meta':
            return HOST
        if not isinstance(arg, torch.Tensor) or not arg.is_meta:
            return arg
        if metadata:
            return torch.empty_strided(arg.shape, arg.stride(),
                                       dtype=arg.dtype)
        if index_only and arg.is_floating_point():
            return arg
        value = self.value(arg)
        return arg if index_only and value is None else value

    @staticmethod
    def _written(func, args, kwargs):
        """The tensors ``func`` writes to (in-place and ``out=``)."""
        written = []
        for i, arg in enumerate(func._schema.arguments):
            if arg.alias_info is None or not arg.alias_info.is_write:
                continue
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            values = value if isinstance(value, (list, tuple)) else [value]
            written += [v for v in values if isinstance(v, torch.Tensor)]
        return written

    def _decomposes(self, func):
        """Whether ``func.decompose`` would decompose (cached)."""
        known = self._decomposable.get(func)
        if known is None:
            key = torch._C.DispatchKey.CompositeImplicitAutograd
            known = key in func.py_kernels or \
                torch._C._dispatch_has_kernel_for_dispatch_key(func.name(),
                                                               key)
            self._decomposable[func] = known
        return known

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in FLOP_FORMULAS and func is not \
                torch.ops.prim.device.default and self._decomposes(func):
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = self._run(func, args, kwargs)
        formula = FLOP_FORMULAS.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out

    def _run(self, func, args, kwargs):
        flat, spec = tree_flatten((args, kwargs))
        if not any(isinstance(a, torch.Tensor) and a.is_meta
                   or isinstance(a, torch.device) and a.type == 'meta'
                   for a in flat):
            return func(*args, **kwargs)
        host = [self._host(a, metadata=i == 0 and func in METADATA_ONLY)
                for i, a in enumerate(flat)]
        valued = not any(isinstance(a, torch.Tensor) and h is None
                         for a, h in zip(flat, host))
        random = torch.Tag.nondeterministic_seeded in func.tags
        written = self._written(func, args, kwargs)
        try:
            out, failed = func(*args, **kwargs), None
        except (NotImplementedError, RuntimeError) as error:
            out, failed = None, error
        if valued and not random and (failed is not None or written or all(
                o.numel() <= self.max_numel for o in tree_flatten(out)[0]
                if isinstance(o, torch.Tensor))):
            host_args, host_kwargs = tree_unflatten(host, spec)
            try:
                real, computed = func(*host_args, **host_kwargs), True
            except (NotImplementedError, RuntimeError):
                if failed is not None:
                    raise
                computed = False  # no host kernel: outputs stay value-less
        else:
            computed = False
        if computed:
            if failed is not None:
                out = tree_map(lambda r: r.to(META)
                               if isinstance(r, torch.Tensor) else r, real)
            fresh = not func.is_view and not written
            for o, r in zip(tree_flatten(out)[0], tree_flatten(real)[0]):
                if isinstance(o, torch.Tensor) and o.is_meta:
                    self.values[o] = r
                    if fresh:
                        self.stale.discard(o.untyped_storage()._cdata)
            return out
        if failed is not None:
            retry = [self._host(a, index_only=True) for a in flat]
            if all(r is a for r, a in zip(retry, flat)):
                # A real tensor (a buffer computed at construction, such as
                # MAGVIT-v2's LFQ bit weights) meeting meta activations:
                # the output's shape is all there is to compute.
                retry = [a.to(META) if isinstance(a, torch.Tensor)
                         and not a.is_meta and a.dim() else a for a in flat]
            if all(r is a for r, a in zip(retry, flat)):
                raise failed
            retry_args, retry_kwargs = tree_unflatten(retry, spec)
            out = func(*retry_args, **retry_kwargs)
        for tensor in written:
            if tensor.is_meta:
                self.stale.add(tensor.untyped_storage()._cdata)
        return out


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
    counter = MetaValues()
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
    return dict(result, flops=counter.flops,
                llm_tokens=tokens['count'])
