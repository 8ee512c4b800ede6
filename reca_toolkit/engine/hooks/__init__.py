from .before_after_val_hook import BeforeAfterValHook
from .collapse_monitor_hook import CollapseMonitorHook
from .eval_sample_grid_hook import EvalSampleGridHook
from .hf_export_hook import HFExportHook
from .sample_grid_hook import SampleGridHook
from .skipped_images_hook import SkippedImagesHook

__all__ = ['BeforeAfterValHook', 'CollapseMonitorHook', 'EvalSampleGridHook',
           'HFExportHook', 'SampleGridHook', 'SkippedImagesHook']
