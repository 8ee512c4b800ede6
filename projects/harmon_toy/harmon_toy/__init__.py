"""The Harmon toy's components, registered on import (configs:
``custom_imports=dict(imports=['projects.harmon_toy.harmon_toy'])``). It
shares the Janus toy's scenes and patch table, which importing it registers
too, so the two toys differ in architecture, not in data.
"""
from projects.janus_toy.janus_toy import GenEvalShapesScenes

from .patch_latents import PatchLatentTokenizer

__all__ = ['GenEvalShapesScenes', 'PatchLatentTokenizer']
