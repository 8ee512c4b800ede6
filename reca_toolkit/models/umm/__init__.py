from .base import BaseUMM, Condition
from .harmon import HarmonUMM
from .janus_pro import JanusProUMM

__all__ = ['BaseUMM', 'Condition', 'HarmonUMM', 'JanusProUMM']
