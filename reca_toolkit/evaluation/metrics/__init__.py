from .reconstruction import ReconstructionMetric, psnr, ssim

__all__ = ['ReconstructionMetric', 'psnr', 'ssim']
