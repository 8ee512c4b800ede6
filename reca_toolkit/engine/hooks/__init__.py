from .hf_export_hook import HFExportHook
from .sample_grid_hook import SampleGridHook
from .skipped_images_hook import SkippedImagesHook

__all__ = ['HFExportHook', 'SampleGridHook', 'SkippedImagesHook']
