from .janus import JanusSigLIPEncoder, JanusVQTokenizer, l2_normalized_codes
from .magvit2 import MAGVITv2Tokenizer
from .vae import VAETokenizer

__all__ = ['JanusSigLIPEncoder', 'JanusVQTokenizer', 'MAGVITv2Tokenizer',
           'VAETokenizer', 'l2_normalized_codes']
