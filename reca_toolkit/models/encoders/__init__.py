from .janus import JanusSigLIPEncoder, JanusVQTokenizer, l2_normalized_codes
from .patch_lookup import PatchLookupTokenizer

__all__ = ['JanusSigLIPEncoder', 'JanusVQTokenizer', 'PatchLookupTokenizer',
           'l2_normalized_codes']
