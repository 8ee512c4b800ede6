"""Will a config fit on a GPU? A preflight estimate, from the architecture
alone: what ``tools/analysis_tools/estimate.py`` prints.

Per GPU, the estimate adds up

* weights, gradients and optimizer states, from the parameters of the model
  built on the meta device (:mod:`~reca_toolkit.models.weightless`) with
  their configured dtypes and ``requires_grad``;
* autocast's low-precision copies of the trainable weights, which it keeps
  for the backward under ``AmpOptimWrapper``;
* activations: the bytes autograd saves for the backward in one forward on
  the meta device, in the autocast dtype, with the config's activation
  checkpointing and chunked cross-entropy
  (:mod:`~reca_toolkit.engine.meta_pass`);
* a transient: the largest saved tensor once more, for its gradient in the
  backward;
* under FSDP, the sharded states divided by the number of GPUs they are
  sharded over (all, or a hybrid shard group; parameters of
  ``ignored_modules`` are not sharded), plus the gathered parameters of
  the root unit and of two transformer blocks (the one running and the one
  prefetched); with ``cpu_offload`` the sharded states live in host memory.

It counts what PyTorch allocates, not the CUDA context, the allocator's
fragmentation or communication buffers: a config "fits" when the estimate
is at most 90% of the GPU's memory. The estimate is not yet validated
against a GPU run (docs/performance.md).
"""
import torch
from mmengine._strategy import FSDPStrategy
from torch import nn

from reca_toolkit.engine.fsdp import shard_group_size
from reca_toolkit.engine.meta_pass import meta_training_step
from reca_toolkit.engine.synthetic_data import synthetic_batches
from reca_toolkit.models.weightless import build_weightless
from reca_toolkit.registry import STRATEGIES

GiB = 2**30
FIT_FRACTION = 0.9


def _adam(param):
    return 2 * param.element_size()


# Optimizer type -> bytes of state per trainable parameter.
OPTIMIZER_STATE_BYTES = {
    'AdamW': _adam,
    'Adam': _adam,
    # bitsandbytes' 8-bit Adam keeps both moments in one byte each.
    'AdamW8bit': lambda param: 2,
    'PagedAdamW8bit': lambda param: 2,
}


def _unique(params):
    return list({id(p): p for p in params}.values())


def _nbytes(params, per_param=None):
    return sum(p.numel() * (per_param(p) if per_param else p.element_size())
               for p in params)


def _optimizer_bytes(cfg, params):
    kind = cfg.optim_wrapper.optimizer['type']
    name = kind if isinstance(kind, str) else kind.__name__
    name = name.rpartition('.')[2]
    if name not in OPTIMIZER_STATE_BYTES:
        raise ValueError(
            f"optim_wrapper.optimizer.type='{name}': the estimate knows the "
            f'state size of {sorted(OPTIMIZER_STATE_BYTES)} only')
    return name, _nbytes(params, OPTIMIZER_STATE_BYTES[name])


def _amp_dtype(cfg):
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') == 'AmpOptimWrapper':
        return getattr(torch, wrapper.get('dtype') or 'float16')
    return None


def _autocast_copies(model, amp_dtype):
    """Low-precision copies autocast makes of trainable matrices (embedding
    lookups are not autocast)."""
    if amp_dtype is None:
        return 0
    embeddings = {id(m.weight) for m in model.modules()
                  if isinstance(m, nn.Embedding)}
    return sum(p.numel() * amp_dtype.itemsize
               for p in _unique(model.parameters())
               if p.requires_grad and p.ndim >= 2 and p.dtype != amp_dtype
               and id(p) not in embeddings)


def _fsdp_plan(cfg, model, num_gpus):
    """None without FSDP; else the wrapper's settings as they matter here
    (``shards``: the GPUs a parameter is sharded over; hybrid sharding
    without ``num_shards`` is taken to run on one node).
    """
    strategy = cfg.get('strategy')
    if not strategy or not issubclass(STRATEGIES.get(strategy['type']),
                                      FSDPStrategy):
        return None
    wrapper = strategy.get('model_wrapper') or {}
    modules = dict(model.named_modules())
    ignored = []
    for name in wrapper.get('ignored_modules', []):
        if name not in modules:
            raise ValueError(f"strategy.model_wrapper.ignored_modules: "
                             f"the model has no module '{name}'")
        ignored += list(modules[name].parameters())
    layers = model.umm.blocks() if wrapper.get('auto_wrap_policy') else []
    return dict(ignored=_unique(ignored), layers=layers,
                cpu_offload=bool(wrapper.get('cpu_offload')),
                shards=shard_group_size(wrapper, strategy.get('num_shards'),
                                        num_gpus))


def _gathered_bytes(model, plan):
    """Parameters FSDP holds unsharded at the peak: the root unit's (all
    not in a block or ignored) and two blocks'."""
    in_layers = {id(p) for m in plan['layers'] for p in m.parameters()}
    skip = in_layers | {id(p) for p in plan['ignored']}
    root = [p for p in _unique(model.parameters()) if id(p) not in skip]
    largest = max((_nbytes(_unique(m.parameters())) for m in plan['layers']),
                  default=0)
    return _nbytes(root) + 2 * largest


def parameter_rows(model):
    """(part, trainable, frozen, dtypes) per UMM part."""
    rows = []
    for name, module in model.umm.parts().items():
        params = _unique(module.parameters())
        rows.append((name, sum(p.numel() for p in params if p.requires_grad),
                     sum(p.numel() for p in params if not p.requires_grad),
                     ','.join(sorted({str(p.dtype)[6:] for p in params}))))
    return rows


def estimate_memory(cfg, batch_size=None, num_gpus=1, gpu_mem_gib=80.0):
    """The estimate for ``cfg`` (module docstring) as a dict; sizes in GiB.
    """
    batch_size = batch_size or cfg.train_dataloader.batch_size
    model = build_weightless(cfg.model.to_dict())
    params = _unique(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    optimizer, optimizer_bytes = _optimizer_bytes(cfg, trainable)
    amp_dtype = _amp_dtype(cfg)
    states = dict(weights=_nbytes(params), gradients=_nbytes(trainable),
                  optimizer=optimizer_bytes)
    plan = _fsdp_plan(cfg, model, num_gpus)
    host = 0
    if plan is not None:
        kept = {id(p) for p in plan['ignored']}
        sharded = dict(
            weights=_nbytes([p for p in params if id(p) not in kept]),
            gradients=_nbytes([p for p in trainable if id(p) not in kept]),
            optimizer=_optimizer_bytes(
                cfg, [p for p in trainable if id(p) not in kept])[1])
        for key, value in sharded.items():
            share = value / plan['shards']
            states[key] -= value
            if plan['cpu_offload']:
                host += share
            else:
                states[key] += share
        states['fsdp_gathered'] = _gathered_bytes(model, plan)
    states['autocast_copies'] = _autocast_copies(model, amp_dtype)
    rows = parameter_rows(model)
    if amp_dtype is not None:
        model.to(amp_dtype)
    step = meta_training_step(
        model, synthetic_batches(cfg, 1, batch_size)[0])
    states['activations'] = step['saved_bytes']
    states['transient'] = step['largest_saved_bytes']
    total = sum(states.values())
    return dict(
        batch_size=batch_size, num_gpus=num_gpus, fsdp=plan is not None,
        shards=plan and plan['shards'],
        cpu_offload=bool(plan and plan['cpu_offload']),
        optimizer=optimizer,
        autocast=None if amp_dtype is None else str(amp_dtype)[6:],
        llm_tokens_per_sample=step['llm_tokens'] / batch_size,
        parts=rows,
        trainable_params=sum(p.numel() for p in trainable),
        active_params=model.umm.active_parameters(),
        frozen_params=sum(p.numel() for p in params if not p.requires_grad),
        gib={k: v / GiB for k, v in states.items()},
        host_gib=host / GiB, total_gib=total / GiB, gpu_mem_gib=gpu_mem_gib,
        fits=total / GiB <= FIT_FRACTION * gpu_mem_gib)


def format_estimate(config, estimate):
    """The estimate as the table ``estimate.py`` prints."""
    e = estimate
    setup = f"batch {e['batch_size']} per GPU"
    if e['fsdp']:
        setup += f", FSDP over {e['num_gpus']} GPUs" + (
            f" (sharded over {e['shards']})"
            if e['shards'] != e['num_gpus'] else '') + (
            ', CPU offload' if e['cpu_offload'] else '')
    lines = [f'{config}: {setup}, {e["optimizer"]}, autocast '
             f'{e["autocast"] or "off"}, '
             f'{e["llm_tokens_per_sample"]:.0f} LLM tokens per sample', '']
    widths = (24, 16, 16)
    lines.append('part'.ljust(widths[0]) + 'trainable'.rjust(widths[1]) +
                 'frozen'.rjust(widths[2]) + '  dtype')
    for name, train, frozen, dtypes in e['parts']:
        lines.append(name.ljust(widths[0]) + f'{train:,}'.rjust(widths[1]) +
                     f'{frozen:,}'.rjust(widths[2]) + f'  {dtypes}')
    lines.append('total'.ljust(widths[0]) +
                 f"{e['trainable_params']:,}".rjust(widths[1]) +
                 f"{e['frozen_params']:,}".rjust(widths[2]))
    for kind, count in e['active_params'].items():
        lines.append(f'active, {kind}'.ljust(widths[0]) +
                     f'{count:,}'.rjust(widths[1]))
    lines += ['', 'memory per GPU'.ljust(widths[0]) + 'GiB'.rjust(widths[1])]
    for key, value in e['gib'].items():
        lines.append(key.replace('_', ' ').ljust(widths[0]) +
                     f'{value:.2f}'.rjust(widths[1]))
    lines.append('total'.ljust(widths[0]) +
                 f"{e['total_gib']:.2f}".rjust(widths[1]))
    if e['cpu_offload']:
        lines.append('host memory per GPU'.ljust(widths[0]) +
                     f"{e['host_gib']:.2f}".rjust(widths[1]))
    verdict = 'fits' if e['fits'] else 'does NOT fit'
    lines += ['', f"{verdict} in {e['gpu_mem_gib']:g} GiB "
              f"({100 * e['total_gib'] / e['gpu_mem_gib']:.0f}% of it; fits "
              f'means at most {FIT_FRACTION:.0%})']
    return '\n'.join(lines)
