"""Image grids of what an evaluation generated, logged with its scalars."""
import torch
import torch.nn.functional as F
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from reca_toolkit.registry import HOOKS
from reca_toolkit.visualization import make_grid


@HOOKS.register_module()
class EvalSampleGridHook(Hook):
    """After every validation (and test) run, log one grid of the first
    ``num_images`` predictions through the runner's visualizer, as
    ``val_samples`` at the training iteration (``test_samples`` at 0).

    A prediction holding several images per prompt contributes its first.
    Each tile is captioned with its prompt (or edit instruction;
    'reconstruction' for reconstructions), which are also logged as text.
    """

    priority = 'LOW'

    def __init__(self, num_images=8, ncols=8):
        self.num_images = num_images
        self.ncols = ncols
        self.images, self.prompts = [], []

    def _collect(self, outputs):
        for out in outputs or ():
            if len(self.images) >= self.num_images or 'pred' not in out:
                return
            pred = out['pred']
            self.images.append((pred[0] if pred.dim() == 4 else pred)
                               .detach().float().cpu())
            self.prompts.append(out.get('prompt', out.get('instruction', '')))

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self._collect(outputs)

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None):
        self._collect(outputs)

    def _log(self, runner, name, step):
        if self.images and is_main_process():
            # Edits keep their source's shape: tiles take the first's.
            size = self.images[0].shape[-2:]
            tiles = [F.interpolate(image[None], size=size, mode='bilinear')[0]
                     if image.shape[-2:] != size else image
                     for image in self.images]
            grid = make_grid(torch.stack(tiles),
                             ncols=min(self.ncols, len(self.images)),
                             captions=[p or 'reconstruction'
                                       for p in self.prompts])
            runner.visualizer.add_image(name, grid, step=step)
            if any(self.prompts):
                runner.logger.info(f'{name} at {step}: ' + ' | '.join(
                    f'{i}: {p}' for i, p in enumerate(self.prompts)))
        self.images, self.prompts = [], []

    def after_val_epoch(self, runner, metrics=None):
        self._log(runner, 'val_samples', runner.iter)

    def after_test_epoch(self, runner, metrics=None):
        self._log(runner, 'test_samples', 0)
