from .eval_sample_grid_hook import EvalSampleGridHook
from .hf_export_hook import HFExportHook
from .sample_grid_hook import SampleGridHook
from .skipped_images_hook import SkippedImagesHook

__all__ = ['EvalSampleGridHook', 'HFExportHook', 'SampleGridHook',
           'SkippedImagesHook']
