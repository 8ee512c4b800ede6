from .base import BaseUMM, Condition
from .bagel import BagelUMM
from .harmon import HarmonUMM
from .janus_pro import JanusProUMM
from .showo import ShowoUMM

__all__ = ['BaseUMM', 'BagelUMM', 'Condition', 'HarmonUMM', 'JanusProUMM',
           'ShowoUMM']
