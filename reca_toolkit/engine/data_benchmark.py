"""Loader throughput of the container sources against a folder of the same
images, and the cost of indexing a tar shard.

Images are synthetic photos-like JPEGs (smooth content plus noise, quality
90, as in docs/performance.md), written once to a folder, to WebDataset tar
shards and to parquet; each source is then read through the real
``MultiSourceDataset`` with ``LoadImage`` + ``ImageViews`` in the order the
``MultiSourceSampler`` shuffles it, in this process: samples/s per worker.
"""
import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from reca_toolkit.datasets.multi_source import MultiSourceDataset
from reca_toolkit.datasets.samplers import (MultiSourceBatchSampler,
                                            MultiSourceSampler)
from reca_toolkit.datasets.tar_shards import build_index


def photo_like(rng, size):
    """A smooth gradient image with noise: decodes like a photo."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)),
                     np.cos(y * rng.uniform(2, 9) + rng.uniform(0, 6)),
                     np.sin((x + y) * rng.uniform(2, 9))], -1)
    image = (base + 1) * 110 + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg(array, quality=90):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='JPEG', quality=quality)
    return buf.getvalue()


def write_data(root, num_images, image_size, per_shard=100,
               row_group_sizes=(100, ), seed=0):
    """The same JPEGs as a folder, tar shards and a parquet file per row
    group size."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    blobs = [jpeg(photo_like(rng, image_size)) for _ in range(num_images)]
    folder = root / 'folder'
    folder.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(blobs):
        (folder / f'{i:06d}.jpg').write_bytes(blob)
    shards = root / 'shards'
    shards.mkdir(exist_ok=True)
    for s in range(0, num_images, per_shard):
        with tarfile.open(shards / f'{s // per_shard:05d}.tar', 'w') as tar:
            for i in range(s, min(s + per_shard, num_images)):
                _add(tar, f'{i:06d}.jpg', blobs[i])
                _add(tar, f'{i:06d}.txt', b'a caption')
    paths = dict(folder=folder, shards=shards,
                 mean_bytes=float(np.mean([len(b) for b in blobs])))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return paths
    for rows in row_group_sizes:
        parquet = root / f'parquet_rg{rows}' / 'train-00000-of-00001.parquet'
        parquet.parent.mkdir(exist_ok=True)
        pq.write_table(pa.table({'image': pa.array(blobs, pa.binary())}),
                       parquet, row_group_size=rows)
        paths[f'parquet_rg{rows}'] = parquet.parent
    return paths


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class SourceReader:
    """One source through LoadImage + ImageViews, in the sampler's shuffled
    order, read in this process (one worker)."""

    def __init__(self, source_cfg, und_size, gen_size, mode, seed=0):
        pipeline = [dict(type='LoadImage'),
                    dict(type='ImageViews', und_size=und_size,
                         gen_size=gen_size, mode=mode)]
        self.dataset = MultiSourceDataset(dict(recon=dict(
            source_cfg, pipeline=pipeline)))
        sampler = MultiSourceSampler(self.dataset, seed=seed)
        sampler.rank, sampler.world_size = 0, 1
        self.keys = iter(MultiSourceBatchSampler(sampler, 1))
        self.dataset[next(self.keys)[0]]  # warm: imports, handles

    def samples_per_second(self, num_samples):
        start = time.perf_counter()
        for _ in range(num_samples):
            self.dataset[next(self.keys)[0]]
        return num_samples / (time.perf_counter() - start)


def index_build_seconds(root, members=10_000, member_bytes=1024, seed=0):
    """Seconds to index one shard of ``members`` members (half images, half
    captions), built and read back; the cached index's load time too."""
    from reca_toolkit.datasets.tar_shards import load_index
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / 'index_bench.tar'
    data = np.random.default_rng(seed).bytes(member_bytes)
    with tarfile.open(path, 'w') as tar:
        for i in range(members // 2):
            _add(tar, f'{i:08d}.jpg', data)
            _add(tar, f'{i:08d}.txt', b'a caption')
    start = time.perf_counter()
    index = build_index(path)
    build = time.perf_counter() - start
    (root / 'index_bench.tar.idx.json').write_text(json.dumps(index))
    start = time.perf_counter()
    load_index(path)
    load = time.perf_counter() - start
    return dict(members=members, shard_bytes=path.stat().st_size,
                build_s=build, cached_load_s=load)


def run(work_dir, image_sizes=(512, 1024), num_images=200, num_samples=200,
        views=((384, 384, 'center_crop'), (512, 512, 'stretch')),
        row_group_sizes=(100, 10), index_members=10_000, rounds=3):
    """Every measurement -> a JSON-able dict: samples/s per worker, the
    best of ``rounds`` rounds of ``num_samples / rounds`` samples."""
    results = dict(loader=[], index=index_build_seconds(
        Path(work_dir) / 'index', index_members))
    for size in image_sizes:
        paths = write_data(Path(work_dir) / f'{size}px', num_images, size,
                           row_group_sizes=row_group_sizes)
        sources = dict(folder=dict(type='ImageFolder', root=str(
            paths['folder'])), shards=dict(type='TarShards', shards=str(
                paths['shards'])))
        # One cached row group: under a shuffle over a real dataset, nearly
        # every sample reads its own row group.
        sources.update({name: dict(type='ParquetImages', files=str(path),
                                   cache_pieces=1)
                        for name, path in paths.items()
                        if name.startswith('parquet')})
        for und, gen, mode in views:
            readers = {name: SourceReader(cfg, und, gen, mode)
                       for name, cfg in sources.items()}
            # Sources take turns, and each keeps its best round: on a shared
            # machine, other load then slows all of them alike.
            best = dict.fromkeys(readers, 0.0)
            for _ in range(rounds):
                for name, reader in readers.items():
                    best[name] = max(best[name], reader.samples_per_second(
                        max(1, num_samples // rounds)))
            for name, rate in best.items():
                results['loader'].append(dict(
                    image_size=size, jpeg_kb=paths['mean_bytes'] / 1e3,
                    und_size=und, gen_size=gen, mode=mode, source=name,
                    samples_per_s=rate))
    return results
