from . import compat
from .config_check import ConfigError, check_config
from .fsdp import RecAFlexibleRunner, RecAFSDPStrategy
from .hooks import (CheckpointError, CheckpointHook, HFExportHook,
                    SampleGridHook, SkippedImagesHook)
from .launch import (NothingToResume, load_config, setup_distributed, test,
                     train)
from .loops import ResumableIterBasedTrainLoop
from .nonfinite import NonFiniteLossError
from .preemption import EXIT_PREEMPTED, TrainingPreempted
from .optim_constructor import DecayGroupsOptimWrapperConstructor

__all__ = ['compat', 'ConfigError', 'check_config', 'CheckpointError',
           'CheckpointHook', 'HFExportHook', 'SampleGridHook',
           'SkippedImagesHook', 'NothingToResume', 'load_config',
           'setup_distributed', 'test', 'train', 'NonFiniteLossError',
           'EXIT_PREEMPTED', 'TrainingPreempted',
           'ResumableIterBasedTrainLoop', 'DecayGroupsOptimWrapperConstructor',
           'RecAFlexibleRunner', 'RecAFSDPStrategy']
