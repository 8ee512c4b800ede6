from .janus import JanusSigLIPEncoder, JanusVQTokenizer, l2_normalized_codes

__all__ = ['JanusSigLIPEncoder', 'JanusVQTokenizer', 'l2_normalized_codes']
