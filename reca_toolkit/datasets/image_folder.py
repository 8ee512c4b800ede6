"""Unlabeled images in a folder: all RecA needs."""
from pathlib import Path

from reca_toolkit.datasets.source import Source
from reca_toolkit.registry import DATASETS

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp')


@DATASETS.register_module()
class ImageFolder(Source):
    """Every image under ``root`` (recursively), sorted by path.

    Args:
        root: the folder.
        extensions: file suffixes to take, case-insensitive.
        recursive: also look in sub-folders.
        pipeline: transforms; the raw sample is ``dict(img_path=...)``.
    """

    def __init__(self, root, extensions=IMAGE_EXTENSIONS, recursive=True,
                 pipeline=()):
        super().__init__(pipeline)
        self.root = Path(root)
        self.files = sorted(self._images(self.root, extensions, recursive))
        if not self.files:
            raise FileNotFoundError(self._empty_message(self.root, extensions))

    @staticmethod
    def _images(root, extensions, recursive):
        if not root.is_dir():
            raise FileNotFoundError(
                f"image folder '{root}' does not exist; put the unlabeled "
                'training images there or set the source root')
        suffixes = {e.lower() for e in extensions}
        return (p for p in root.glob('**/*' if recursive else '*')
                if p.suffix.lower() in suffixes and p.is_file())

    @staticmethod
    def _empty_message(root, extensions):
        return (f"image folder '{root}' holds no images with extensions "
                f'{sorted(e.lower() for e in extensions)}')

    @classmethod
    def validate_config(cls, cfg):
        """The folder exists and holds at least one image."""
        root = Path(cfg['root'])
        extensions = cfg.get('extensions', IMAGE_EXTENSIONS)
        if next(cls._images(root, extensions, cfg.get('recursive', True)),
                None) is None:
            raise FileNotFoundError(cls._empty_message(root, extensions))

    def __len__(self):
        return len(self.files)

    def raw(self, index):
        return dict(img_path=str(self.files[index]))
