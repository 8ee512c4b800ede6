"""Random images with captions and conversations of a set length.

The benchmark and the memory estimate put this source in place of a config's
training sources, keeping each source's pipeline, so that they need no data
on disk and every batch has the same shapes.
"""
import numpy as np

from reca_toolkit.datasets.source import Source
from reca_toolkit.registry import DATASETS

_WORDS = ('a small red circle sits left of two blue squares under a yellow '
          'triangle on a grey table').split()


def _text(num_words, offset):
    return ' '.join(_WORDS[(offset + i) % len(_WORDS)]
                    for i in range(num_words))


@DATASETS.register_module()
class SyntheticImages(Source):
    """``num_samples`` random RGB images, each with a caption and a one-turn
    conversation.

    Args:
        num_samples: the source's length.
        image_size: side of the raw square images, before the pipeline.
        caption_words: words in each caption (text-to-image prompts).
        answer_words: words in each conversation's answer (image-to-text).
        pipeline: transforms; the raw sample has ``img`` (an array),
            ``caption`` and ``conversations``.
    """

    def __init__(self, num_samples=1024, image_size=512, caption_words=24,
                 answer_words=96, pipeline=()):
        super().__init__(pipeline)
        self.num_samples = num_samples
        self.image_size = image_size
        self.caption_words = caption_words
        self.answer_words = answer_words

    def __len__(self):
        return self.num_samples

    def raw(self, index):
        rng = np.random.default_rng(index)
        image = rng.integers(0, 256, (self.image_size, self.image_size, 3),
                             dtype=np.uint8)
        caption = _text(self.caption_words, index)
        answer = _text(self.answer_words, index + 1)
        return dict(img=image, caption=caption,
                    conversations=[('Describe this image in detail.',
                                    answer)])
