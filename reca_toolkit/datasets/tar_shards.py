"""WebDataset tar shards, read in place: no extraction.

Each shard is indexed once -- the byte offset and size of every member's
data, grouped into samples by key -- and the index is cached; a sample is
then one ``seek`` + ``read``. So the sampler's exact, resumable,
world-size-independent random access works on shards as on a folder.
"""
import hashlib
import json
import os
import tarfile
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from mmengine.logging import print_log

from reca_toolkit.datasets.data_files import caption_fields, expand_files
from reca_toolkit.datasets.source import Source
from reca_toolkit.datasets.transforms.loading import ImageLoadError
from reca_toolkit.registry import DATASETS

INDEX_FORMAT = 'reca_toolkit.tar_index/1'
IMAGE_EXTENSIONS = ('jpg', 'jpeg', 'png', 'webp')
DEFAULT_INDEX_DIR = '~/.cache/reca_toolkit/shard_index'
BLOCK = tarfile.BLOCKSIZE


class ShardError(RuntimeError):
    """A shard that cannot be indexed (truncated, corrupt, compressed), or
    that changed or disappeared after it was indexed. Never skipped: the
    index no longer describes the file."""


def split_key(name):
    """WebDataset: ``dir/abc.seg.jpg`` -> key ``dir/abc``, ext ``seg.jpg``."""
    folder, _, base = name.rpartition('/')
    stem, dot, ext = base.partition('.')
    if not dot or not stem:
        return None, None
    return (f'{folder}/{stem}' if folder else stem), ext


def build_index(path):
    """Read a shard's headers once -> its index (a JSON-able dict)."""
    path = Path(path)
    stat = path.stat()
    members, last = [], None
    try:
        with tarfile.open(path, 'r:') as tar:
            while True:
                info = tar.next()
                if info is None:
                    break
                tar.members.clear()  # headers only; keep memory flat
                if info.isfile():
                    members.append((info.name, info.offset_data, info.size))
                    last = info.name
            end = tar.offset
    except tarfile.ReadError as e:
        where = f" after member '{last}'" if last else ''
        raise ShardError(f"tar shard '{path}' is truncated or corrupt{where}"
                         f' ({e}); re-download or re-create it') from None
    except tarfile.CompressionError as e:
        raise ShardError(f"tar shard '{path}': {e}") from None
    for name, offset, size in members:
        if offset + size > stat.st_size:
            raise ShardError(
                f"tar shard '{path}' is truncated: member '{name}' needs "
                f'bytes {offset}-{offset + size} of a {stat.st_size}-byte '
                'file')
    with open(path, 'rb') as f:
        f.seek(end)
        marker = f.read(2 * BLOCK)
    if len(marker) < 2 * BLOCK or marker.strip(b'\0'):
        where = f" after member '{last}'" if last else ''
        raise ShardError(
            f"tar shard '{path}' is truncated{where}: no end-of-archive "
            f'marker at byte {end} of {stat.st_size}; re-download or '
            're-create it')
    samples = OrderedDict()
    for name, offset, size in members:
        key, ext = split_key(name)
        if key is not None:
            samples.setdefault(key, {})[ext] = [offset, size]
    return dict(format=INDEX_FORMAT, shard=path.name, size=stat.st_size,
                mtime_ns=stat.st_mtime_ns, members=len(members),
                samples=[[key, parts] for key, parts in samples.items()])


def _fresh(index, stat):
    return (isinstance(index, dict) and index.get('format') == INDEX_FORMAT
            and index.get('size') == stat.st_size
            and index.get('mtime_ns') == stat.st_mtime_ns)


def index_locations(shard, index_dir):
    """Where a shard's index may live: beside it, then the cache folder
    (``index_dir`` when set: only there)."""
    shard = Path(shard).resolve()
    tag = hashlib.sha1(str(shard).encode()).hexdigest()[:12]
    cached = Path(os.path.expanduser(index_dir or os.environ.get(
        'RECA_INDEX_DIR', DEFAULT_INDEX_DIR))) / f'{tag}-{shard.name}.idx.json'
    if index_dir is not None:
        return [cached]
    return [shard.with_name(shard.name + '.idx.json'), cached]


def _write_atomic(path, index):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(index, f, separators=(',', ':'))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_index(shard, index_dir=None):
    """The shard's cached index if it matches the shard's size and mtime;
    otherwise built now and cached (atomically: ranks building the same
    index at once each write a whole file)."""
    shard = Path(shard)
    stat = shard.stat()
    locations = index_locations(shard, index_dir)
    for location in locations:
        try:
            index = json.loads(location.read_text())
        except (OSError, ValueError):
            continue
        if _fresh(index, stat):
            return index
        print_log(f"index '{location}' is stale (the shard changed since it "
                  'was built); rebuilding', logger='current', level=30)
    index = build_index(shard)
    for location in locations:
        try:
            _write_atomic(location, index)
            break
        except OSError:
            continue
    else:
        print_log(f"could not cache the index of '{shard}' in any of "
                  f'{[str(p) for p in locations]}; set index_dir',
                  logger='current', level=30)
    return index


@DATASETS.register_module()
class TarShards(Source):
    """Samples of WebDataset tar shards: ``{key}.jpg|jpeg|png|webp`` plus
    optional ``{key}.txt`` / ``{key}.json``, read in place.

    Samples are ordered by shard (sorted by path), then by their order in the
    shard. Keys without an image are left out.

    Args:
        shards: a ``.tar`` file, a folder of them (recursive), a glob
            (``data/blip3o/*.tar``), or a list of those.
        caption_from: None (images only: RecA), ``'txt'`` (the ``.txt``
            member) or ``'json'`` (``caption_field`` of the ``.json`` member;
            a LLaVA message list there becomes ``conversations``). When set,
            every sample must have it.
        caption_field: the ``.json`` field with the caption.
        caption_question: the user turn paired with a caption, as in
            ``CaptionedImages``.
        extensions: image extensions, in order of preference when a key has
            several.
        index_dir: where indices are cached. None: beside each shard
            (``shard.tar.idx.json``) when that folder is writable, else
            ``$RECA_INDEX_DIR`` or ``~/.cache/reca_toolkit/shard_index``.
        max_open_files: open shard handles kept per worker process.
        pipeline: transforms; the raw sample is ``img_bytes`` and
            ``img_name`` (``shard.tar[key.jpg]``) plus ``caption`` /
            ``conversations`` when captioned.
    """

    def __init__(self, shards, caption_from=None, caption_field='caption',
                 caption_question='Describe this image in detail.',
                 extensions=IMAGE_EXTENSIONS, index_dir=None,
                 max_open_files=64, pipeline=()):
        super().__init__(pipeline)
        if caption_from not in (None, 'txt', 'json'):
            raise ValueError("TarShards caption_from must be None, 'txt' or "
                             f"'json', got {caption_from!r}")
        self.caption_from = caption_from
        self.caption_field = caption_field
        self.caption_question = caption_question
        self.max_open_files = max_open_files
        self.paths = [str(p) for p in expand_files(shards, ('.tar', ),
                                                   'TarShards')]
        extensions = [e.lower().lstrip('.') for e in extensions]
        start = time.perf_counter()
        shard_ids, image, caption, keys, ext_ids = [], [], [], [], []
        ext_names, self.stats, missing = {}, [], []
        for shard_id, path in enumerate(self.paths):
            index = load_index(path, index_dir)
            self.stats.append((index['size'], index['mtime_ns']))
            for key, parts in index['samples']:
                lower = {e.lower(): e for e in parts}
                ext = next((lower[e] for e in extensions if e in lower), None)
                if ext is None:
                    continue
                if caption_from is not None:
                    if caption_from not in lower:
                        missing.append(f'{path}[{key}.{caption_from}]')
                        continue
                    caption.append(parts[lower[caption_from]])
                shard_ids.append(shard_id)
                image.append(parts[ext])
                keys.append(key)
                ext_ids.append(ext_names.setdefault(ext, len(ext_names)))
        if missing:
            raise ValueError(
                f"TarShards caption_from='{caption_from}': {len(missing)} "
                f'samples have no .{caption_from} member, e.g. '
                f'{missing[:3]}')
        if not keys:
            raise FileNotFoundError(
                f'TarShards: no member with an image extension {extensions} '
                f'in {len(self.paths)} shard(s), e.g. {self.paths[0]}')
        # Flat arrays, not per-sample objects: nothing for data workers'
        # reference counting to copy.
        self._shard = np.asarray(shard_ids, np.int32)
        self._image = np.asarray(image, np.int64).reshape(-1, 2)
        self._caption = np.asarray(caption, np.int64).reshape(-1, 2)
        self._ext = np.asarray(ext_ids, np.int16)
        self._ext_names = list(ext_names)
        self._keys = np.asarray(keys, dtype=bytes if all(
            k.isascii() for k in keys) else str)
        self.index_seconds = time.perf_counter() - start
        self._files = OrderedDict()
        self._pid = None

    @classmethod
    def validate_config(cls, cfg):
        expand_files(cfg['shards'], ('.tar', ), 'TarShards')

    def __len__(self):
        return len(self._shard)

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_files'], state['_pid'] = OrderedDict(), None
        return state

    def _key(self, index):
        key = self._keys[index]
        return key.decode() if isinstance(key, bytes) else str(key)

    def _name(self, index):
        return f'{self._key(index)}.{self._ext_names[self._ext[index]]}'

    def where(self, index, member=None):
        """``shard.tar[key.jpg]``: what errors and logs call a sample."""
        member = member or self._name(index)
        return f'{self.paths[self._shard[index]]}[{member}]'

    def _file(self, shard_id):
        if self._pid != os.getpid():  # a new data worker: its own handles
            self._files, self._pid = OrderedDict(), os.getpid()
        f = self._files.get(shard_id)
        if f is None:
            path = self.paths[shard_id]
            try:
                f = open(path, 'rb', buffering=0)
            except FileNotFoundError:
                raise ShardError(f"tar shard '{path}' disappeared after it "
                                 'was indexed') from None
            self._files[shard_id] = f
            if len(self._files) > self.max_open_files:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(shard_id)
        stat = os.fstat(f.fileno())
        if (stat.st_size, stat.st_mtime_ns) != self.stats[shard_id]:
            path = self.paths[shard_id]
            raise ShardError(
                f"tar shard '{path}' changed after it was indexed (size/mtime "
                f'{stat.st_size}/{stat.st_mtime_ns}, index '
                f'{self.stats[shard_id][0]}/{self.stats[shard_id][1]}); '
                'restart to re-index it')
        return f

    def read_member(self, index, offset, size, member):
        """The member's data, checked against its own tar header."""
        shard_id = self._shard[index]
        f = self._file(shard_id)
        f.seek(offset - BLOCK)
        data = f.read(BLOCK + size)
        try:
            header = tarfile.TarInfo.frombuf(data[:BLOCK], 'utf-8',
                                             'surrogateescape')
            ok = len(data) == BLOCK + size and header.size == size and (
                header.name.lower() == member.lower() or len(member) >= 100 or
                header.name.endswith('/' + member.split('/')[-1]))
        except tarfile.HeaderError:
            ok = False
        if not ok:
            raise ShardError(
                f"tar shard '{self.paths[shard_id]}' no longer matches its "
                f"index at member '{member}' (byte {offset}); delete its "
                '.idx.json and restart')
        return data[BLOCK:]

    def raw(self, index):
        offset, size = self._image[index]
        name = self._name(index)
        sample = dict(img_bytes=self.read_member(index, offset, size, name),
                      img_name=self.where(index))
        if self.caption_from is not None:
            member = f'{self._key(index)}.{self.caption_from}'
            offset, size = self._caption[index]
            data = self.read_member(index, offset, size, member)
            where = self.where(index, member)
            try:
                text = data.decode('utf-8')
                value = text if self.caption_from == 'txt' else \
                    json.loads(text)[self.caption_field]
            except (UnicodeDecodeError, ValueError, KeyError,
                    TypeError) as e:
                raise ImageLoadError(
                    where, f'bad caption: {type(e).__name__}: {e}') from None
            sample.update(caption_fields(value, self.caption_question, where))
        return sample
