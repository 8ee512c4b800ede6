from .base import Detection
from .external import ExternalCommand
from .feature_nets import TorchvisionFeatures
from .lpips import LPIPS
from .mmdet_detector import MMDetDetector
from .open_clip_colors import OpenCLIPColorClassifier
from .openai_judge import JudgeError, JudgeVQA, OpenAICompatibleJudge
from .palette import PaletteColorClassifier, PaletteShapeDetector

__all__ = ['Detection', 'ExternalCommand', 'TorchvisionFeatures', 'LPIPS',
           'MMDetDetector', 'OpenCLIPColorClassifier',
           'JudgeError', 'JudgeVQA', 'OpenAICompatibleJudge',
           'PaletteColorClassifier', 'PaletteShapeDetector']
