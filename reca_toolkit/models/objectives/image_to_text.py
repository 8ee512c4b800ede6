"""Image-to-text: the model's understanding objective."""
from reca_toolkit.models.objectives.base import Objective
from reca_toolkit.registry import OBJECTIVES


@OBJECTIVES.register_module()
class ImageToText(Objective):
    """Cross-entropy on the answers of conversations about an image.

    For parameter-shared UMMs (Janus, Harmon, Show-o) the RecA authors keep
    image-to-text data in the mix so that understanding does not collapse.
    """

    def loss(self, umm, batch):
        return umm.understanding_loss(batch['und_pixels'],
                                      batch['conversations'])
