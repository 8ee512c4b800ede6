"""Sample image grids during training."""
import contextlib

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from reca_toolkit.registry import HOOKS
from reca_toolkit.visualization import make_grid


def sampling_context(runner):
    """Autocast like training does, so samples match the trained numerics."""
    dtype = getattr(runner.optim_wrapper, 'cast_dtype', None)
    if dtype is None:
        return contextlib.nullcontext()
    device = next(runner.model.parameters()).device.type
    return torch.autocast(device_type=device, dtype=dtype)


@HOOKS.register_module()
class SampleGridHook(Hook):
    """Every ``interval`` iterations and at the end of training, log two PNG
    grids through the runner's visualizer, each tile captioned:

    * ``reconstruction``: fixed training images (top row, 'input') and the
      model's reconstructions of them (bottom row, 'reconstruction');
    * ``prompts``: one sample per fixed text prompt, under its prompt;
    * ``edits``: the first fixed images (top row) edited by one instruction
      each (bottom row, under its instruction), ``RecAModel.edit``.

    Args:
        interval: iterations between grids.
        source: the training source whose first ``num_images`` samples are
            reconstructed; they are loaded under the training data's skip
            policy (``MultiSourceDataset.load``), so with
            ``skip_bad_images=True`` a bad file among them is skipped.
        num_images: how many images to reconstruct.
        prompts: text prompts to sample.
        edits: edit instructions for the first ``len(edits)`` fixed images
            (at most ``num_images``).
        seed: sampling seed, the same every time so grids are comparable.
        sampling: extra arguments for the sampler (``guidance_scale``,
            ``temperature``, ...).
    """

    priority = 'LOW'

    def __init__(self, interval=500, source='recon', num_images=4,
                 prompts=(), edits=(), seed=0, sampling=None):
        if len(edits) > num_images:
            raise ValueError(f'SampleGridHook: {len(edits)} edits need as '
                             f'many fixed images; num_images={num_images}')
        self.interval = interval
        self.source = source
        self.num_images = num_images
        self.prompts = list(prompts)
        self.edits = list(edits)
        self.seed = seed
        self.sampling = sampling or {}
        self.images = None

    def before_train(self, runner):
        dataset = runner.train_dataloader.dataset
        sources = getattr(dataset, 'sources', {})
        if self.num_images and self.source not in sources:
            raise ValueError(
                f"SampleGridHook source='{self.source}' is not a training "
                f'source; the dataset has {sorted(sources)}')
        if self.num_images:
            samples = self._first_samples(dataset)
            self.images = {key: torch.stack([s[key] for s in samples])
                           for key in ('und_pixels', 'gen_pixels')}

    def _first_samples(self, dataset):
        """The first ``num_images`` samples of the source that load."""
        size = len(dataset.sources[self.source])
        samples, index = [], 0
        while len(samples) < self.num_images and index < size:
            sample, skipped = dataset.load(self.source, index, draw=index)
            index += skipped
            if index >= size:
                break       # wrapped around to samples already taken
            samples.append(sample)
            index += 1
        return samples

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if (self.every_n_train_iters(runner, self.interval)
                or self.is_last_train_iter(runner)):
            self.log_grids(runner, step=runner.iter + 1)

    @torch.no_grad()
    def log_grids(self, runner, step):
        if not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        to_float = lambda x: x.to(device).float() / 127.5 - 1  # noqa: E731
        with sampling_context(runner):
            if self.images is not None:
                recon = model.reconstruct(to_float(self.images['und_pixels']),
                                          seed=self.seed, **self.sampling)
                target = to_float(self.images['gen_pixels'])
                runner.visualizer.add_image(
                    'reconstruction',
                    make_grid(torch.cat([target, recon.to(device)]),
                              ncols=len(target),
                              captions=['input'] * len(target)
                              + ['reconstruction'] * len(recon)), step=step)
            if self.prompts:
                images = model.generate(self.prompts, seed=self.seed,
                                        **self.sampling)
                runner.visualizer.add_image(
                    'prompts', make_grid(images, ncols=len(images),
                                         captions=self.prompts), step=step)
            if self.edits and self.images is not None:
                count = len(self.edits)
                source = to_float(self.images['gen_pixels'][:count])
                edited = model.edit(
                    to_float(self.images['und_pixels'][:count]), self.edits,
                    seed=self.seed, source_pixels=source, **self.sampling)
                runner.visualizer.add_image(
                    'edits', make_grid(
                        torch.cat([source, edited.to(device)]), ncols=count,
                        captions=['input'] * count + self.edits), step=step)
        model.train(was_training)
        print_log(f'sample grids logged at iteration {step}',
                  logger='current')
