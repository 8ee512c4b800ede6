"""Training throughput of a config, measured: what ``tools/benchmark.py``
runs.

A step is ``model.train_step`` (preprocessing, forward, backward, optimizer
update) on synthetic batches shaped like the config's own
(:mod:`~reca_toolkit.engine.synthetic_data`), after warm-up steps.

MFU (model FLOPs utilisation) = model FLOPs of a step / step time / the
device's dense bf16 peak. Model FLOPs are counted, not estimated: one
forward and backward of the same batch on the meta device
(:mod:`~reca_toolkit.engine.meta_pass`), a multiply-add counted as 2, with
attention as the memory-efficient kernel computes it and without the
recomputation of activation checkpointing or chunked cross-entropy.
docs/performance.md writes the count out per family as a formula (about
10.5 TFLOP per 384 px RecA sample at Janus-Pro-1B, 19 per 512 px sample at
Harmon-1.5B).
"""
import contextlib
import copy
import datetime
import os
import platform
import resource
import time

import torch
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner

from reca_toolkit.engine.meta_pass import llm_token_counter, meta_training_step
from reca_toolkit.engine.synthetic_data import synthetic_batches
from reca_toolkit.models.weightless import build_weightless, materialize
from reca_toolkit.registry import MODELS, UMMS

# Dense (no sparsity) bf16 tensor-core peaks from the vendor datasheets, in
# TFLOP/s, matched in order against torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = (
    ('H200', 989.4),
    ('H100 80GB HBM3', 989.4),  # H100 SXM5
    ('H100 SXM', 989.4),
    ('H100 PCIe', 756.0),
    ('A100', 312.0),
)
# What --compare times against: no fused optimizer kernels, and the UMM's
# own naive switches (``BaseUMM.naive_switches``).
NAIVE_OPTIMIZER = dict(fused=False, foreach=False)


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    cpu = platform.machine()
    if os.path.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    return f'{cpu}, {torch.get_num_threads()} threads'


def peak_tflops(device):
    """The table's bf16 peak for ``device``, or None (CPUs, other GPUs)."""
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name),
                None)


def model_flops(model_cfg, batch):
    """Model FLOPs of one training step on ``batch`` (module docstring)."""
    counted = copy.deepcopy(model_cfg)
    counted['umm'].update(UMMS.get(counted['umm']['type']).uncounted_switches)
    return meta_training_step(build_weightless(counted), batch)


def naive_cfg(cfg):
    """``cfg`` with every speed switch off."""
    cfg = copy.deepcopy(cfg)
    cfg.model.umm.update(UMMS.get(cfg.model.umm.type).naive_switches)
    cfg.optim_wrapper.optimizer.update(NAIVE_OPTIMIZER)
    return cfg


def _precision(cfg, device):
    """The optim wrapper config to build, and the autocast context a CPU
    needs in place of ``AmpOptimWrapper`` (which refuses CPUs)."""
    wrapper = copy.deepcopy(cfg.optim_wrapper.to_dict())
    if wrapper.get('type') != 'AmpOptimWrapper' or device.type == 'cuda':
        return wrapper, contextlib.nullcontext, wrapper.get('dtype',
                                                            'float32')
    dtype = wrapper.pop('dtype', 'bfloat16')
    wrapper.pop('loss_scale', None)
    wrapper['type'] = 'OptimWrapper'
    return wrapper, lambda: torch.autocast('cpu', getattr(torch, dtype)), \
        f'{dtype} (CPU autocast)'


def _build(cfg, device, meta_init):
    # The same random weights for the optimised run and its naive baseline,
    # so that their losses are comparable step by step.
    torch.manual_seed(0)
    if meta_init:
        return materialize(build_weightless(cfg.model.to_dict()), device)
    return MODELS.build(cfg.model).to(device)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def peak_memory_gib(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**30, \
            'max_memory_allocated'
    # ru_maxrss is in KiB on Linux: the process's peak, imports included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, \
        'peak RSS of the process'


def time_training(cfg, batches, warmup, device, meta_init):
    """Mean step time over ``batches[warmup:]``, and what it implies."""
    model = _build(cfg, device, meta_init)
    wrapper_cfg, autocast, precision = _precision(cfg, device)
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    tokens, handle = llm_token_counter(model)
    losses = []
    try:
        for i, batch in enumerate(batches):
            if i == warmup:
                _sync(device)
                if device.type == 'cuda':
                    torch.cuda.reset_peak_memory_stats(device)
                tokens['count'] = 0
                start = time.perf_counter()
            with autocast():
                log = model.train_step(batch, optim_wrapper)
            losses.append(float(log['loss'].detach()))
        _sync(device)
        elapsed = time.perf_counter() - start
    finally:
        handle.remove()
    steps = len(batches) - warmup
    memory, kind = peak_memory_gib(device)
    del model, optim_wrapper
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return dict(step_time_s=elapsed / steps, precision=precision,
                llm_tokens_per_step=tokens['count'] / steps,
                peak_memory_gib=memory, peak_memory_kind=kind,
                losses=losses)


def loader_throughput(cfg, num_batches):
    """Samples/s of the config's own training dataloader (its workers,
    pipeline and data), or the reason it cannot be measured."""
    try:
        loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader),
                                         seed=0)
    except (FileNotFoundError, ValueError) as e:
        return dict(skipped=f'{type(e).__name__}: {e}')
    batches = iter(loader)
    next(batches)  # worker start-up is not throughput
    start = time.perf_counter()
    samples = sum(len(b['inputs'][s]['draw']) for b in
                  (next(batches) for _ in range(num_batches))
                  for s in b['inputs'])
    seconds = time.perf_counter() - start
    return dict(samples_per_s=samples / seconds, batches=num_batches,
                num_workers=cfg.train_dataloader.get('num_workers', 0))


def _rates(run, batch_size, flops, peak):
    step = run['step_time_s']
    run.update(samples_per_s=batch_size / step,
               tokens_per_s=run['llm_tokens_per_step'] / step,
               achieved_tflops=flops / step / 1e12,
               mfu=None if peak is None else flops / step / (peak * 1e12))
    return run


def benchmark(cfg, batch_size=None, iters=10, warmup=3, meta_init=False,
              compare=False, peak=None, device=None, loader_batches=None):
    """Time the config's training step (and, with ``compare``, the naive
    baseline on the same batches); returns a JSON-able dict."""
    device = torch.device(device or ('cuda' if torch.cuda.is_available()
                                     else 'cpu'))
    batch_size = batch_size or cfg.train_dataloader.batch_size
    batches = synthetic_batches(cfg, warmup + iters, batch_size)
    counted = model_flops(cfg.model.to_dict(), batches[0])
    peak = peak if peak is not None else peak_tflops(device)
    result = dict(
        date=datetime.date.today().isoformat(), device=device_name(device),
        torch=torch.__version__, batch_size=batch_size, iters=iters,
        warmup=warmup, meta_init=meta_init,
        model_tflop_per_step=counted['flops'] / 1e12,
        model_tflop_per_sample=counted['flops'] / batch_size / 1e12,
        peak_bf16_tflops=peak)
    result['optimised'] = _rates(
        time_training(cfg, batches, warmup, device, meta_init), batch_size,
        counted['flops'], peak)
    if compare:
        result['baseline'] = _rates(
            time_training(naive_cfg(cfg), batches, warmup, device,
                          meta_init), batch_size, counted['flops'], peak)
        result['speedup_vs_baseline'] = (
            result['baseline']['step_time_s'] /
            result['optimised']['step_time_s'])
    loader = loader_throughput(cfg, loader_batches or iters)
    if 'samples_per_s' in loader:
        loader['ratio_to_step_consumption'] = (
            loader['samples_per_s'] / result['optimised']['samples_per_s'])
    result['loader'] = loader
    return result
