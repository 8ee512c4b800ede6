from .base import BaseUMM, Condition
from .janus_pro import JanusProUMM

__all__ = ['BaseUMM', 'Condition', 'JanusProUMM']
