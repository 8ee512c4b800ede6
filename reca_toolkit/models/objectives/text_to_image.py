"""Text-to-image: the model's generation objective on captioned images."""
from reca_toolkit.models.objectives.base import Objective
from reca_toolkit.registry import OBJECTIVES


@OBJECTIVES.register_module()
class TextToImage(Objective):
    """``generation_loss(template(caption), x_gen)``.

    Args:
        null_prob: share of samples whose prompt is replaced by the model's
            classifier-free "null" prompt (``null_condition``: the family's
            own form and length), which is what lets classifier-free
            guidance work at sampling time.
    """

    def __init__(self, null_prob=0.1, **kwargs):
        super().__init__(**kwargs)
        self.null_prob = null_prob

    def loss(self, umm, batch):
        condition = umm.text_condition(batch['caption'])
        drop = [self.rng(d).random() < self.null_prob for d in batch['draw']]
        if any(drop):
            condition = condition.with_null(umm.null_condition(condition),
                                            drop)
        return umm.generation_loss(
            condition, batch['gen_pixels'],
            draws=self.generation_seeds(batch['draw']))
