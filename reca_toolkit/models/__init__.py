from . import encoders, generators, objectives, tokenizers, umm
from .data_preprocessor import RecADataPreprocessor
from .reca import RecAModel

__all__ = ['encoders', 'generators', 'objectives', 'tokenizers', 'umm',
           'RecADataPreprocessor', 'RecAModel']
