from .autoregressive import AutoregressiveCodeGenerator
from .diffusion_head import DiffusionHead
from .flow_matching import FlowMatchingGenerator
from .masked_autoregressive import MaskedAutoregressiveGenerator
from .maskgit import MaskGITGenerator

__all__ = ['AutoregressiveCodeGenerator', 'DiffusionHead',
           'FlowMatchingGenerator', 'MaskGITGenerator',
           'MaskedAutoregressiveGenerator']
