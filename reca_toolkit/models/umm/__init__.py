from .base import BaseUMM, Condition
from .harmon import HarmonUMM
from .janus_pro import JanusProUMM
from .showo import ShowoUMM

__all__ = ['BaseUMM', 'Condition', 'HarmonUMM', 'JanusProUMM', 'ShowoUMM']
