from .janus import JanusSigLIPEncoder, JanusVQTokenizer, l2_normalized_codes
from .patch_lookup import PatchLookupTokenizer
from .vae import VAETokenizer

__all__ = ['JanusSigLIPEncoder', 'JanusVQTokenizer', 'PatchLookupTokenizer',
           'VAETokenizer', 'l2_normalized_codes']
