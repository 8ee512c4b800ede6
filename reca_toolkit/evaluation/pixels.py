"""Model outputs as the uint8 images benchmarks score and save."""
from reca_toolkit.visualization import to_uint8


def images_of(pred):
    """A prediction's images as uint8 ``[N, H, W, 3]``, whether it holds one
    image ``[3, H, W]`` or several ``[N, 3, H, W]``."""
    return to_uint8(pred[None] if pred.dim() == 3 else pred)
