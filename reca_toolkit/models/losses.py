"""Loss reductions that give the same gradient at any world size."""
import torch
import torch.distributed as dist
import torch.nn.functional as F


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
