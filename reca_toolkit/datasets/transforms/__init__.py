from .loading import ImageLoadError, LoadImage, load_image
from .views import AspectViews, ImageViews

__all__ = ['ImageLoadError', 'LoadImage', 'load_image', 'ImageViews',
           'AspectViews']
