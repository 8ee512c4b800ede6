from .janus import JanusSigLIPEncoder, JanusVQTokenizer, l2_normalized_codes
from .vae import VAETokenizer

__all__ = ['JanusSigLIPEncoder', 'JanusVQTokenizer', 'VAETokenizer',
           'l2_normalized_codes']
