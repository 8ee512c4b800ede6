"""Loss reductions that give the same gradient at any world size."""
import functools

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def global_mean(values, count):
    """``values.sum() / count`` over the *global* batch.

    DDP averages gradients over ranks. Dividing each rank's sum by the global
    count and multiplying by the world size makes that average equal the
    single-process mean, also when ranks hold different numbers of tokens
    (image-to-text answers differ in length).
    """
    count = torch.as_tensor(count, dtype=torch.float32, device=values.device)
    world = 1
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if world > 1:
            count = count.clone()
            dist.all_reduce(count)
    return values.sum() * world / count.clamp(min=1)


def cross_entropy(logits, targets):
    """Token cross-entropy and accuracy, reduced over the global batch.

    ``logits``: ``[N, V]``; ``targets``: ``[N]`` (already selected positions).
    """
    losses = F.cross_entropy(logits.float(), targets, reduction='none')
    with torch.no_grad():
        acc = (logits.argmax(-1) == targets).float().mean()
    return global_mean(losses, targets.numel()), acc


def _summed_cross_entropy(head, hidden, targets):
    logits = head(hidden)
    loss = F.cross_entropy(logits.float(), targets, reduction='sum')
    with torch.no_grad():
        hits = (logits.argmax(-1) == targets).sum()
    return loss, hits


def head_cross_entropy(hidden, head, targets, chunk_size=None):
    """:func:`cross_entropy` of ``head(hidden)``, with ``chunk_size`` rows at
    a time.

    ``hidden``: ``[..., D]`` states of the scored positions; ``targets``:
    ``[...]``. With ``chunk_size`` each chunk's logits are computed under
    activation checkpointing, so only one chunk's logits exist in the forward
    and in the backward instead of ``N x V`` of them (Janus-Pro at batch 16:
    9216 x 16384 float32 logits are 0.6 GB, and their gradient as much
    again). The price is a second run of the head per chunk in the backward.
    The reduction is the same global mean.
    """
    if chunk_size is None or targets.numel() == 0:
        return cross_entropy(head(hidden).flatten(0, -2), targets.flatten())
    hidden, targets = hidden.flatten(0, -2), targets.flatten()
    run = functools.partial(_summed_cross_entropy, head)
    total, hits = 0, 0
    for rows, labels in zip(hidden.split(chunk_size),
                            targets.split(chunk_size)):
        loss, correct = checkpoint(run, rows, labels, use_reentrant=False)
        total, hits = total + loss, hits + correct
    return global_mean(total, targets.numel()), hits.float() / len(targets)
