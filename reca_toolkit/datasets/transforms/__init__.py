from .loading import ImageLoadError, LoadImage
from .views import ImageViews

__all__ = ['ImageLoadError', 'LoadImage', 'ImageViews']
