"""The RecA training model: weighted objectives over one UMM."""
import torch
from mmengine.model import BaseModel
from torch import nn

from reca_toolkit.registry import MODELS, OBJECTIVES, UMMS


def one_row(pixels, i, n):
    """Row ``i`` of a batch of pixels (a tensor, or a list of differently
    shaped ones) repeated ``n`` times, ``[n, 3, H, W]``."""
    row = pixels[i:i + 1] if isinstance(pixels, torch.Tensor) \
        else pixels[i][None]
    return row.expand(n, -1, -1, -1)


@MODELS.register_module()
class RecAModel(BaseModel):
    """A UMM trained with a weighted sum of objectives, one backward a step.

    Args:
        umm: the UMM adapter config.
        objectives: name -> objective config. Each objective reads the batch
            of the data source of the same name (or its ``source=``); its
            loss is logged as ``loss_<name>``, its other outputs as
            ``<key>_<name>``.
        reconstruct_instruction: the instruction used when reconstructing
            images at inference (sample grids, evaluation).
        data_preprocessor: defaults to :class:`RecADataPreprocessor`.
    """

    def __init__(self, umm, objectives,
                 reconstruct_instruction='Describe the image in detail.',
                 data_preprocessor=None, init_cfg=None):
        super().__init__(
            data_preprocessor=data_preprocessor
            or dict(type='RecADataPreprocessor'),
            init_cfg=init_cfg)
        self.umm = UMMS.build(umm)
        self.objectives = nn.ModuleDict({
            name: OBJECTIVES.build(cfg, default_args=dict(source=name))
            for name, cfg in objectives.items()
        })
        self.reconstruct_instruction = reconstruct_instruction

    def init_weights(self):
        """Weights come from the UMM's own loading; nothing to initialise."""

    def forward(self, inputs, data_samples=None, mode='loss'):
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        raise ValueError(f"mode must be 'loss' or 'predict', got '{mode}'")

    def loss(self, inputs):
        losses = {}
        for name, objective in self.objectives.items():
            batch = inputs.get(objective.source)
            if batch is None or objective.weight == 0:
                continue
            outputs = objective.loss(self.umm, batch)
            losses[f'loss_{name}'] = outputs.pop('loss') * objective.weight
            losses.update({f'{k}_{name}': v for k, v in outputs.items()})
        if not losses:
            raise ValueError(
                f'the batch holds sources {sorted(inputs)}, but no objective '
                f'with weight > 0 reads them; objectives read '
                f'{ {n: o.source for n, o in self.objectives.items()} }')
        return losses

    def _generator(self, seed, device):
        return torch.Generator(device=device).manual_seed(seed)

    @torch.no_grad()
    def reconstruct(self, und_pixels, seed=0, **sampling):
        """Images in [-1, 1] -> reconstructions in [-1, 1]."""
        return self.umm.reconstruct(
            und_pixels, self.reconstruct_instruction,
            generator=self._generator(seed, und_pixels.device), **sampling)

    @torch.no_grad()
    def generate(self, prompts, seed=0, **sampling):
        """Text prompts -> images in [-1, 1]."""
        condition = self.umm.text_condition(prompts)
        return self.umm.generate(
            condition, generator=self._generator(seed,
                                                 condition.embeds.device),
            **sampling)

    @torch.no_grad()
    def edit(self, und_pixels, instructions, seed=0, source_pixels=None,
             **sampling):
        """Images in [-1, 1] plus edit instructions -> edited images, as the
        UMM edits (:meth:`BaseUMM.edit`: by default RecA's
        image-conditioned prompt); ``source_pixels``: the images at the
        generation size, for families that need them."""
        return self.umm.edit(
            und_pixels, list(instructions),
            generator=self._generator(seed, und_pixels.device),
            source_pixels=source_pixels, **sampling)

    def _predict_rows(self, batch):
        """Per row of one source's batch: its generated, edited or
        reconstructed image(s) (``pred``), or its answer (``pred_text``).

        A row with ``num_images`` gets that many samples, stacked
        ``[N, 3, H, W]``; each prompt or edit row samples alone with a
        generator seeded by its ``seed``, so an image depends on its prompt
        and seed only, never on the batch it shared. Reconstruction rows run
        as one batch seeded by the first row's seed. Rows with
        ``conversations`` (image-to-text data) are answered greedily, the
        first question of each, as one batch.
        """
        size = len(next(iter(batch.values())))
        seeds = [int(s) for s in batch['seed']] if 'seed' in batch \
            else [0] * size
        counts = [int(n) for n in batch['num_images']] \
            if 'num_images' in batch else None
        if 'conversations' in batch:
            questions = [turns[0][0] for turns in batch['conversations']]
            for text in self.umm.describe(batch['und_pixels'], questions):
                yield dict(pred_text=text)
            return
        if 'prompt' not in batch and 'instruction' not in batch:
            for image in self.reconstruct(batch['und_pixels'], seed=seeds[0]):
                yield dict(pred=image)
            return
        if 'prompt' not in batch and 'und_pixels' not in batch:
            raise ValueError(
                'edit samples need und_pixels: give the dataset a pipeline '
                "with LoadImage and ImageViews(und_size=...)")
        for i in range(size):
            n = counts[i] if counts else 1
            if 'prompt' in batch:
                images = self.generate([batch['prompt'][i]] * n,
                                       seed=seeds[i])
            else:
                source = batch.get('gen_pixels')
                images = self.edit(
                    one_row(batch['und_pixels'], i, n),
                    [batch['instruction'][i]] * n, seed=seeds[i],
                    source_pixels=None if source is None else
                    one_row(source, i, n))
            yield dict(pred=images if counts else images[0])

    def predict(self, inputs):
        """One result dict per sample: generations for prompt sources, edits
        for sources with an ``instruction``, answers for image-to-text
        sources, reconstructions otherwise; the batch's fields are carried
        along."""
        results = []
        for source, batch in inputs.items():
            for i, outputs in enumerate(self._predict_rows(batch)):
                result = dict(source=source, **outputs)
                for key, value in batch.items():
                    result[key] = value[i]
                results.append(result)
        return results
