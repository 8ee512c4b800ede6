from .metrics import ReconstructionMetric

__all__ = ['ReconstructionMetric']
