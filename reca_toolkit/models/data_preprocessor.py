"""Moves batches to the device and turns uint8 images into [-1, 1] floats."""
from mmengine.model import BaseDataPreprocessor

from reca_toolkit.registry import MODELS

PIXEL_KEYS = ('und_pixels', 'gen_pixels')


@MODELS.register_module()
class RecADataPreprocessor(BaseDataPreprocessor):
    """Per-source batches in, per-source batches out.

    Images travel from the loader as uint8 (a quarter of float32's bytes) and
    are normalised on the device; every UMM adapter takes [-1, 1] pixels.
    """

    def forward(self, data, training=False):
        data = self.cast_data(data)
        for source, batch in data['inputs'].items():
            for key in PIXEL_KEYS:
                if isinstance(batch.get(key), list):  # differing shapes
                    if training:
                        shapes = sorted({tuple(v.shape) for v in batch[key]})
                        raise ValueError(
                            f"{key} of source '{source}' differ in shape "
                            f'{shapes}: a training batch needs one size per '
                            'source (ImageViews); AspectViews keeps each '
                            "image's shape, for evaluation")
                    batch[key] = [v.float() / 127.5 - 1 for v in batch[key]]
                elif key in batch:
                    batch[key] = batch[key].float() / 127.5 - 1
        return data
