from .captioned import CaptionedImages
from .image_folder import ImageFolder
from .multi_source import MultiSourceDataset, SampleKey, collate_by_source
from .samplers import MultiSourceBatchSampler, MultiSourceSampler
from .shapes import ShapeScenes
from .source import Source
from .transforms import ImageLoadError, ImageViews, LoadImage

__all__ = ['CaptionedImages', 'ImageFolder', 'MultiSourceDataset',
           'SampleKey', 'collate_by_source', 'MultiSourceBatchSampler',
           'MultiSourceSampler', 'ShapeScenes', 'Source', 'ImageLoadError',
           'ImageViews', 'LoadImage']
