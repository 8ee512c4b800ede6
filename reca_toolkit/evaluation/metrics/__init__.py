from .description import DescriptionAccuracyMetric
from .dpg import DPGMetric
from .fid import frechet_distance
from .gedit import GEditMetric
from .geneval import GenEvalMetric
from .imgedit import ImgEditMetric
from .reconstruction import ReconstructionMetric, psnr, ssim
from .wise import WISEMetric

__all__ = ['DescriptionAccuracyMetric', 'DPGMetric', 'frechet_distance',
           'GEditMetric', 'GenEvalMetric', 'ImgEditMetric',
           'ReconstructionMetric', 'psnr', 'ssim', 'WISEMetric']
