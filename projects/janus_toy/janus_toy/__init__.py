"""The toy's components, registered into reca_toolkit's registries on import
(configs: ``custom_imports=dict(imports=['projects.janus_toy.janus_toy'])``).
"""
from .patch_lookup import PatchLookupTokenizer, shape_patch_codebook
from .scenes import GenEvalShapesScenes

__all__ = ['GenEvalShapesScenes', 'PatchLookupTokenizer',
           'shape_patch_codebook']
