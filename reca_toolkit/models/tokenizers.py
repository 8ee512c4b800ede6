"""Tokenizers: loaded from local folders, or built in code for tiny models."""
from pathlib import Path

from reca_toolkit.registry import TOKENIZERS

_CAPTION_WORDS = (
    'a photo of an image with one two three four five six some many several '
    'red green blue yellow purple white black orange pink brown gray grey '
    'circle square triangle circles squares triangles shape shapes object '
    'left right above below of next to on top under behind in front and the '
    'small large big tiny background foreground scene picture drawing'
)


@TOKENIZERS.register_module(name='HFTokenizer')
def hf_tokenizer(path):
    """A tokenizer from a local Hugging Face folder; never downloads."""
    from transformers import AutoTokenizer
    if not Path(path).is_dir():
        raise FileNotFoundError(f'tokenizer folder {path} does not exist')
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def demo_tokenizer(special_tokens, template_pieces, vocab_size=1024,
                   **tokens):
    """A byte-level BPE for tiny models, trained in code.

    It is trained on the reconstruction instructions, the family's chat
    template pieces and a caption vocabulary, so tiny models tokenize their
    prompts into few tokens; being byte-level, it encodes any text. The
    ``special_tokens`` get ids 0, 1, ... in order, so tiny model configs can
    name their ids. ``tokens``: ``PreTrainedTokenizerFast`` arguments
    (``bos_token``, ``pad_token``, ``extra_special_tokens``, ...).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    from reca_toolkit.models.objectives.instructions import \
        load_instructions
    corpus = list(load_instructions()) + list(template_pieces) + [
        'Generate an image.', _CAPTION_WORDS
    ]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **tokens)
