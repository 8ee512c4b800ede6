from . import card, scorers
from .metrics import (DPGMetric, GEditMetric, GenEvalMetric, ImgEditMetric,
                      ReconstructionMetric, WISEMetric)
from .scorers.builder import build_scorer

__all__ = ['card', 'scorers', 'DPGMetric', 'GEditMetric', 'GenEvalMetric',
           'ImgEditMetric', 'ReconstructionMetric', 'WISEMetric',
           'build_scorer']
