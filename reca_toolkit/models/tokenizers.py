"""Tokenizers: loaded from local folders, or built in code for tiny models."""
from pathlib import Path

from reca_toolkit.registry import TOKENIZERS

# Janus's own special tokens. The tokenizer built in code gives them ids 0..5
# so that a tiny JanusConfig can set ``image_token_id=3``.
JANUS_SPECIAL_TOKENS = ('<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>',
                        '<｜▁pad▁｜>', '<image_placeholder>',
                        '<begin_of_image>', '<end_of_image>')

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


@TOKENIZERS.register_module(name='JanusDemoTokenizer')
def janus_demo_tokenizer(vocab_size=1024):
    """A byte-level BPE with Janus's special tokens, trained in code.

    It is trained on the reconstruction instructions, Janus's chat template
    and a caption vocabulary, so tiny models tokenize their prompts into few
    tokens; being byte-level, it encodes any text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    from reca_toolkit.models.objectives.instructions import \
        load_instructions
    corpus = list(load_instructions()) + [
        '<|User|>: ', '\n\n<|Assistant|>:', 'Generate an image.',
        _CAPTION_WORDS
    ]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(JANUS_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    bos, eos, pad, image, boi, eoi = JANUS_SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos,
        pad_token=pad,
        extra_special_tokens=dict(image_token=image, boi_token=boi,
                                  eoi_token=eoi))
