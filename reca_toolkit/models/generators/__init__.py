from .autoregressive import AutoregressiveCodeGenerator
from .diffusion_head import DiffusionHead
from .flow_matching import FlowMatchingGenerator
from .masked_autoregressive import MaskedAutoregressiveGenerator

__all__ = ['AutoregressiveCodeGenerator', 'DiffusionHead',
           'FlowMatchingGenerator', 'MaskedAutoregressiveGenerator']
