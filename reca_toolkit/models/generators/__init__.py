from .autoregressive import AutoregressiveCodeGenerator
from .diffusion_head import DiffusionHead
from .masked_autoregressive import MaskedAutoregressiveGenerator

__all__ = ['AutoregressiveCodeGenerator', 'DiffusionHead',
           'MaskedAutoregressiveGenerator']
