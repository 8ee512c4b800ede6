"""Counts images the data pipeline skipped, across ranks, in the log."""
import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook

from reca_toolkit.registry import HOOKS


@HOOKS.register_module()
class SkippedImagesHook(Hook):
    """Logs ``data/skipped_images``, the running total of unloadable images
    replaced by ``MultiSourceDataset(skip_bad_images=True)``."""

    priority = 'NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        skipped = torch.tensor(float(data_batch['data_samples']['skipped']))
        all_reduce(skipped)
        total = runner.message_hub.get_info('skipped_images', 0) + int(skipped)
        runner.message_hub.update_info('skipped_images', total)
        runner.message_hub.update_scalar('train/data/skipped_images', total)
