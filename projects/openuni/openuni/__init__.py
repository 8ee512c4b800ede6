"""OpenUni through projects/: the adapter and its tokenizer register here;
the flow-matching generator is the core's."""
from .openuni_umm import OpenUniUMM, internvl_demo_tokenizer

__all__ = ['OpenUniUMM', 'internvl_demo_tokenizer']
