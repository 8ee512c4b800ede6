"""Images in columnar files, read in place with pyarrow: parquet shards
(Hugging Face dumps such as MidjourneyV6, BAGEL's row groups) and datasets
saved with Hugging Face ``datasets``' ``save_to_disk`` (arrow files), without
depending on ``datasets``.

pyarrow is an optional dependency: ``pip install 'reca_toolkit[data]'``.
"""
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from reca_toolkit.datasets.data_files import (caption_fields, expand_files,
                                              hub_id_error, looks_like_hub_id)
from reca_toolkit.datasets.source import Source
from reca_toolkit.datasets.tar_shards import ShardError
from reca_toolkit.datasets.transforms.loading import ImageLoadError
from reca_toolkit.registry import DATASETS


def require_pyarrow(kind):
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError(
            f'{kind} reads its files with pyarrow, an optional dependency '
            "that is not installed: pip install 'reca_toolkit[data]' (or "
            'pip install pyarrow)') from None
    return pyarrow


class TableSource(Source):
    """Rows of arrow tables split into pieces (parquet row groups, arrow
    files), of which a small LRU is kept decoded per worker process, so
    memory stays bounded by ``cache_pieces`` pieces of the read columns.

    Subclasses call :meth:`_set_pieces` and implement :meth:`_read_piece`.
    """

    def __init__(self, image_column='image', caption_column=None,
                 caption_question='Describe this image in detail.',
                 image_root=None, cache_pieces=2, pipeline=()):
        super().__init__(pipeline)
        self.image_column = image_column
        self.caption_column = caption_column
        self.caption_question = caption_question
        self.image_root = image_root
        self.cache_pieces = max(1, int(cache_pieces))
        self._cache, self._pid = OrderedDict(), None

    @property
    def columns(self):
        return [c for c in (self.image_column, self.caption_column)
                if c is not None]

    def _check_columns(self, names, where):
        absent = [c for c in self.columns if c not in names]
        if absent:
            raise ValueError(f"{where} has no column {absent}; its columns "
                             f'are {list(names)} (set image_column / '
                             'caption_column)')

    def _set_pieces(self, pieces, rows):
        """``pieces[i]`` -- ``(file, part)`` -- holds ``rows[i]`` rows."""
        self._pieces = pieces
        self._stamps = {}
        for path, _ in pieces:
            if path not in self._stamps:
                stat = os.stat(path)
                self._stamps[path] = (stat.st_size, stat.st_mtime_ns)
        self._starts = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
        if self._starts[-1] == 0:
            raise ValueError(f'{type(self).__name__}: the files hold no rows')

    def __len__(self):
        return int(self._starts[-1])

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_cache'], state['_pid'] = OrderedDict(), None
        return state

    def _read_piece(self, piece):
        raise NotImplementedError

    def _describe(self, piece, row):
        raise NotImplementedError

    def _piece(self, i):
        if self._pid != os.getpid():  # a new data worker: its own cache
            self._cache, self._pid = OrderedDict(), os.getpid()
        table = self._cache.get(i)
        if table is None:
            self._check_unchanged(self._pieces[i][0])
            table = self._read_piece(self._pieces[i])
            self._cache[i] = table
            if len(self._cache) > self.cache_pieces:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return table

    def _check_unchanged(self, path):
        """A file rewritten or removed since it was listed would be misread
        (row counts, offsets): stop, naming it. Never skipped."""
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise ShardError(f"'{path}' disappeared after it was "
                             'listed') from None
        if (stat.st_size, stat.st_mtime_ns) != self._stamps[path]:
            raise ShardError(f"'{path}' changed after it was listed "
                             '(size or mtime); restart to re-read it')

    def locate(self, index):
        """Sample ``index`` -> (piece number, row in the piece)."""
        if not 0 <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)}')
        i = int(np.searchsorted(self._starts, index, side='right')) - 1
        return i, int(index - self._starts[i])

    def where(self, index):
        i, row = self.locate(index)
        return self._describe(self._pieces[i], row)

    def _image_fields(self, value, piece, where):
        if isinstance(value, dict):  # datasets' Image(): {bytes, path}
            value = value.get('bytes') or value.get('path')
        if isinstance(value, (bytes, bytearray, memoryview)):
            return dict(img_bytes=bytes(value), img_name=where)
        if isinstance(value, str) and value:
            root = Path(self.image_root) if self.image_root is not None \
                else Path(piece[0]).parent
            return dict(img_path=str(root / value))
        raise ImageLoadError(where, f"column '{self.image_column}' holds no "
                             f'image ({type(value).__name__})')

    def raw(self, index):
        i, row = self.locate(index)
        piece = self._pieces[i]
        where = self._describe(piece, row)
        try:
            table = self._piece(i)
            record = {c: table.column(c)[row].as_py() for c in self.columns}
        except (OSError, ValueError) as e:  # pyarrow errors subclass these
            raise ImageLoadError(where, f'{type(e).__name__}: {e}') from None
        sample = self._image_fields(record[self.image_column], piece, where)
        if self.caption_column is not None:
            caption = record[self.caption_column]
            if caption is None:
                raise ImageLoadError(
                    where, f"column '{self.caption_column}' is null")
            sample.update(caption_fields(caption, self.caption_question,
                                         where))
        return sample


@DATASETS.register_module()
class ParquetImages(TableSource):
    """Rows of parquet files, by file (sorted by path), then row.

    Random access reads the row group that holds the row (only the image and
    caption columns) and keeps ``cache_pieces`` decoded row groups per
    worker; under the sampler's shuffle nearly every sample reads its own
    row group, so files with small row groups read fastest
    (docs/data.md).

    Args:
        files: a ``.parquet`` file, a folder of them (recursive), a glob,
            or a list of those.
        image_column: encoded image bytes, a ``{'bytes': ..., 'path': ...}``
            struct (Hugging Face ``Image()``), or a path relative to
            ``image_root`` (default: the parquet file's folder).
        caption_column: optional; text gives ``caption`` and a one-turn
            ``conversations``, a LLaVA message list gives ``conversations``.
        caption_question: the user turn paired with a caption.
        cache_pieces: decoded row groups kept per worker process.
        pipeline: transforms; the raw sample is ``img_bytes`` + ``img_name``
            (``file.parquet (row group g, row r)``), or ``img_path``.
    """

    def __init__(self, files, image_column='image', caption_column=None,
                 caption_question='Describe this image in detail.',
                 image_root=None, cache_pieces=2, pipeline=()):
        super().__init__(image_column, caption_column, caption_question,
                         image_root, cache_pieces, pipeline)
        require_pyarrow('ParquetImages')
        self.files = [str(p) for p in expand_files(files, ('.parquet', ),
                                                   'ParquetImages')]
        pieces, rows = parquet_pieces(self.files, self._check_columns)
        self._set_pieces(pieces, rows)
        self._handles = {}

    @classmethod
    def validate_config(cls, cfg):
        require_pyarrow('ParquetImages')
        expand_files(cfg['files'], ('.parquet', ), 'ParquetImages')

    def __getstate__(self):
        state = super().__getstate__()
        state['_handles'] = {}
        return state

    def _read_piece(self, piece):
        path, group = piece
        if self._handles.get('pid') != os.getpid():
            self._handles = dict(pid=os.getpid())
        handle = self._handles.get(path)
        if handle is None:
            import pyarrow.parquet as pq
            handle = self._handles[path] = pq.ParquetFile(path)
        return handle.read_row_group(group, columns=self.columns)

    def _describe(self, piece, row):
        return f'{piece[0]} (row group {piece[1]}, row {row})'


def parquet_pieces(files, check_columns):
    """Every row group of ``files``: ([(file, group)], [rows])."""
    import pyarrow.parquet as pq
    pieces, rows = [], []
    for path in files:
        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as e:  # noqa: BLE001 -- pyarrow's errors vary
            raise ValueError(f"'{path}' is not a readable parquet file: "
                             f'{type(e).__name__}: {e}') from None
        check_columns(meta.schema.to_arrow_schema().names, f"'{path}'")
        for group in range(meta.num_row_groups):
            pieces.append((path, group))
            rows.append(meta.row_group(group).num_rows)
    return pieces, rows


@DATASETS.register_module()
class LocalHFDataset(TableSource):
    """A Hugging Face dataset on local disk, read with pyarrow alone: a
    folder written by ``datasets``' ``save_to_disk`` (``state.json`` +
    ``*.arrow``, memory-mapped; a ``DatasetDict`` folder with ``split``), or
    a downloaded dataset repository of parquet files. Never a hub id:
    download first (the error says how).

    Args:
        path: the local folder.
        split: the ``DatasetDict`` split, or for parquet files the split
            their names or folders carry (``train-00000-of-00004.parquet``,
            ``train/...``); None: the only split, or every parquet file.
        image_column, caption_column, caption_question, image_root,
        cache_pieces, pipeline: as for ``ParquetImages``.
    """

    def __init__(self, path, split=None, image_column='image',
                 caption_column=None,
                 caption_question='Describe this image in detail.',
                 image_root=None, cache_pieces=2, pipeline=()):
        super().__init__(image_column, caption_column, caption_question,
                         image_root, cache_pieces, pipeline)
        require_pyarrow('LocalHFDataset')
        self.path = str(self.resolve(path, split))
        root = Path(self.path)
        if (root / 'state.json').is_file():
            self.kind = 'arrow'
            pieces, rows = self._arrow_pieces(root)
        else:
            self.kind = 'parquet'
            files = self._parquet_files(root, split)
            pieces, rows = parquet_pieces(files, self._check_columns)
        self._set_pieces(pieces, rows)
        self._handles = {}

    @staticmethod
    def resolve(path, split=None):
        """The folder that holds the split's files; refuses hub ids."""
        spec = os.path.expanduser(str(path))
        root = Path(spec)
        if not root.exists():
            if looks_like_hub_id(spec):
                raise hub_id_error(spec, 'LocalHFDataset')
            raise FileNotFoundError(f"LocalHFDataset: '{spec}' does not "
                                    'exist')
        if not root.is_dir():
            raise NotADirectoryError(f"LocalHFDataset: '{spec}' is not a "
                                     'folder')
        splits_file = root / 'dataset_dict.json'
        if splits_file.is_file():
            splits = json.loads(splits_file.read_text()).get('splits', [])
            if split is None and len(splits) == 1:
                split = splits[0]
            if split not in splits:
                raise ValueError(f"LocalHFDataset: '{spec}' holds splits "
                                 f'{splits}; set split= to one of them')
            root = root / split
        return root

    @classmethod
    def validate_config(cls, cfg):
        require_pyarrow('LocalHFDataset')
        cls.resolve(cfg['path'], cfg.get('split'))

    def _arrow_pieces(self, root):
        state = json.loads((root / 'state.json').read_text())
        names = [f['filename'] for f in state.get('_data_files', [])]
        if not names:
            raise ValueError(f"'{root / 'state.json'}' lists no data files")
        pieces, rows = [], []
        for name in names:
            path = root / name
            if not path.is_file():
                raise FileNotFoundError(f"'{path}', listed in "
                                        f"'{root / 'state.json'}', is missing")
            table = self._open_arrow(str(path))
            self._check_columns(table.schema.names, f"'{path}'")
            pieces.append((str(path), None))
            rows.append(table.num_rows)
            del table
        return pieces, rows

    @staticmethod
    def _open_arrow(path):
        """A memory-mapped arrow file (stream format, as ``datasets`` writes
        it, or the file format): zero-copy, so rows cost no memory."""
        import pyarrow as pa
        source = pa.memory_map(path)
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(pa.memory_map(path)).read_all()

    @staticmethod
    def _parquet_files(root, split):
        files = expand_files(root, ('.parquet', ), 'LocalHFDataset')
        if split is not None:
            files = [f for f in files
                     if f.name.startswith((f'{split}-', f'{split}_',
                                           f'{split}.'))
                     or split in f.relative_to(root).parts[:-1]]
            if not files:
                raise FileNotFoundError(
                    f"LocalHFDataset: no parquet file of split '{split}' "
                    f"under '{root}' (by name '{split}-*.parquet' or folder "
                    f"'{split}/')")
        return [str(f) for f in files]

    def __getstate__(self):
        state = super().__getstate__()
        state['_handles'] = {}
        return state

    def _read_piece(self, piece):
        path, group = piece
        if self._handles.get('pid') != os.getpid():
            self._handles = dict(pid=os.getpid())
        handle = self._handles.get(path)
        if group is None:  # memory-mapped: kept open, costs no memory
            if handle is None:
                handle = self._handles[path] = self._open_arrow(path).select(
                    self.columns)
            return handle
        if handle is None:
            import pyarrow.parquet as pq
            handle = self._handles[path] = pq.ParquetFile(path)
        return handle.read_row_group(group, columns=self.columns)

    def _describe(self, piece, row):
        if piece[1] is None:
            return f'{piece[0]} (row {row})'
        return f'{piece[0]} (row group {piece[1]}, row {row})'
