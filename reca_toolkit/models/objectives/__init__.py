from .base import Objective
from .image_to_text import ImageToText
from .instructions import load_instructions
from .reconstruction import ReconstructionAlignment
from .text_to_image import TextToImage

__all__ = ['Objective', 'ImageToText', 'ReconstructionAlignment',
           'TextToImage', 'load_instructions']
