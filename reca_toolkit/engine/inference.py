"""Loading a trained model and sampling from it, for the tools."""
import contextlib
from pathlib import Path

import torch
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint

from reca_toolkit.datasets.transforms import ImageViews, LoadImage
from reca_toolkit.engine.launch import load_config
from reca_toolkit.registry import MODELS
from reca_toolkit.visualization import make_grid, save_png


def load_model(config, checkpoint=None, device='cpu', cfg_options=None):
    """Build the config's model and load a checkpoint's weights into it.

    Checkpoints load with ``weights_only=True`` (reca_toolkit checkpoints
    always do) or from ``.safetensors``.
    """
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'reca_toolkit'))
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.to(device).eval(), cfg


def recon_views(cfg, source='recon'):
    """The ``ImageViews`` settings of a training source's pipeline."""
    try:
        pipeline = cfg.train_dataloader.dataset.sources[source].pipeline
    except (AttributeError, KeyError):
        pipeline = []
    for step in pipeline:
        if step.get('type') == 'ImageViews':
            return {k: v for k, v in step.items() if k != 'type'}
    raise ValueError(f"the config's training source '{source}' has no "
                     'ImageViews step to take the image sizes from')


def _autocast(device, amp):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type,
                          dtype=torch.bfloat16)


@torch.no_grad()
def write_samples(model, cfg, out_dir, prompts=(), images=(), seed=0,
                  batch_size=8, amp=False, **sampling):
    """Generate ``prompts`` and reconstruct ``images`` into ``out_dir``.

    Writes one PNG per sample (``prompt_000.png``, ``recon_000.png``), a
    grid per kind (``prompts_grid.png``; ``recon_grid.png`` with inputs above
    reconstructions) and ``prompts.txt``. Returns the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    written = []
    if prompts:
        samples = []
        with _autocast(device, amp):
            for i in range(0, len(prompts), batch_size):
                samples.append(model.generate(
                    list(prompts[i:i + batch_size]), seed=seed + i,
                    **sampling).float().cpu())
        samples = torch.cat(samples)
        for i, image in enumerate(samples):
            written.append(out_dir / f'prompt_{i:03d}.png')
            save_png(make_grid(image[None], ncols=1, pad=0), written[-1])
        written.append(out_dir / 'prompts_grid.png')
        save_png(make_grid(samples, ncols=min(len(samples), 8)), written[-1])
        (out_dir / 'prompts.txt').write_text(
            ''.join(f'prompt_{i:03d}.png\t{p}\n' for i, p in
                    enumerate(prompts)))
    if images:
        load, views = LoadImage(), ImageViews(**recon_views(cfg))
        loaded = [views(load(dict(img_path=str(p)))) for p in images]
        to_float = lambda k: torch.stack([x[k] for x in loaded]).to(  # noqa
            device).float() / 127.5 - 1
        und, target = to_float('und_pixels'), to_float('gen_pixels')
        with _autocast(device, amp):
            recon = torch.cat([
                model.reconstruct(und[i:i + batch_size], seed=seed + i,
                                  **sampling).float()
                for i in range(0, len(und), batch_size)])
        for i, image in enumerate(recon):
            written.append(out_dir / f'recon_{i:03d}.png')
            save_png(make_grid(image[None], ncols=1, pad=0), written[-1])
        written.append(out_dir / 'recon_grid.png')
        save_png(make_grid(torch.cat([target.cpu(), recon.cpu()]),
                           ncols=len(recon)), written[-1])
    return written
