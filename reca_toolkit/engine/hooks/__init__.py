from .before_after_val_hook import BeforeAfterValHook
from .checkpoint_hook import CheckpointError, CheckpointHook
from .collapse_monitor_hook import CollapseMonitorHook
from .eval_sample_grid_hook import EvalSampleGridHook
from .hf_export_hook import HFExportHook
from .sample_grid_hook import SampleGridHook
from .skipped_images_hook import SkippedImagesHook

__all__ = ['BeforeAfterValHook', 'CheckpointError', 'CheckpointHook',
           'CollapseMonitorHook', 'EvalSampleGridHook', 'HFExportHook',
           'SampleGridHook', 'SkippedImagesHook']
