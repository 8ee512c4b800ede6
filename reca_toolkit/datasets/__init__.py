from .captioned import CaptionedImages
from .image_folder import ImageFolder
from .multi_source import MultiSourceDataset, SampleKey, collate_by_source
from .samplers import MultiSourceBatchSampler, MultiSourceSampler
from .shapes import ShapeScenes
from .source import Source
from .transforms import (AspectViews, ImageLoadError, ImageViews, LoadImage,
                         load_image)

__all__ = ['CaptionedImages', 'ImageFolder', 'MultiSourceDataset',
           'SampleKey', 'collate_by_source', 'MultiSourceBatchSampler',
           'MultiSourceSampler', 'ShapeScenes', 'Source', 'ImageLoadError',
           'ImageViews', 'AspectViews', 'LoadImage', 'load_image']
from .geneval_prompts import GenEvalPrompts  # noqa: E402
from .geneval_shapes import GenEvalShapesPrompts  # noqa: E402
from .prompts import PromptDataset  # noqa: E402
from .dpg_prompts import DPGPrompts  # noqa: E402
from .edit_benchmarks import GEditSet, ImgEditSet  # noqa: E402
from .wise_prompts import WISEPrompts  # noqa: E402
from .held_out_images import HeldOutImages  # noqa: E402
from .eval_sets import EvalSets  # noqa: E402
from .synthetic import SyntheticImages  # noqa: E402
from .feature_cache import FeatureCache  # noqa: E402
from .tar_shards import ShardError, TarShards  # noqa: E402
from .parquet_images import LocalHFDataset, ParquetImages  # noqa: E402
