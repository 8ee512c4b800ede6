from .autoregressive import AutoregressiveCodeGenerator

__all__ = ['AutoregressiveCodeGenerator']
