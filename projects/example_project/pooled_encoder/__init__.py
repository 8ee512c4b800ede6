from .pooled_siglip import PooledSigLIPEncoder

__all__ = ['PooledSigLIPEncoder']
