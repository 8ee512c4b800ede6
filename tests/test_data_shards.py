"""Container sources read in place: WebDataset tar shards, parquet, local
Hugging Face datasets (``save_to_disk`` arrow files and parquet repos).

Every file is written here from rendered scenes; each source is checked
against an ``ImageFolder`` of the same images through the real
``MultiSourceDataset`` + samplers (same samples, same order, resume, two
ranks), and every failure must name the place: shard and member, or file,
row group and row.
"""
import io
import json
import os
import random
import sys
import tarfile
from itertools import islice

import pytest
import torch
from conftest import REPO
from PIL import Image

from reca_toolkit.datasets import (ImageFolder, ImageLoadError,
                                   LocalHFDataset, MultiSourceBatchSampler,
                                   MultiSourceDataset, MultiSourceSampler,
                                   ParquetImages, SampleKey, ShardError,
                                   TarShards, collate_by_source)
from reca_toolkit.datasets import tar_shards as tar_module
from reca_toolkit.datasets.shapes import describe, random_scene, render

pa = pytest.importorskip('pyarrow')
pq = pytest.importorskip('pyarrow.parquet')

N = 12
VIEWS = [dict(type='LoadImage'), dict(type='ImageViews', und_size=16,
                                      gen_size=24)]


def encoded(array, fmt):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope='module')
def images():
    """N rendered scenes: (key, ext, encoded bytes, caption)."""
    rng = random.Random(0)
    items = []
    for i in range(N):
        scene = random_scene(rng)
        ext = ('png', 'jpg', 'webp')[i % 3]
        fmt = dict(png='PNG', jpg='JPEG', webp='WEBP')[ext]
        items.append((f'{i:04d}', ext, encoded(render(scene, 32), fmt),
                      describe(scene)))
    return items


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(root, items, per_shard=7, json_field='caption'):
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(0, len(items), per_shard):
        path = root / f'shard-{s // per_shard:05d}.tar'
        with tarfile.open(path, 'w') as tar:
            for key, ext, data, caption in items[s:s + per_shard]:
                add(tar, f'{key}.{ext}', data)
                add(tar, f'{key}.txt', caption.encode())
                add(tar, f'{key}.json',
                    json.dumps({json_field: caption, 'w': 32}).encode())
        paths.append(path)
    return paths


def image_table(items, kind='bytes', folder=None):
    if kind == 'bytes':
        column = pa.array([d for _, _, d, _ in items], pa.binary())
    elif kind == 'struct':
        column = pa.array([dict(bytes=d, path=f'{k}.{e}')
                           for k, e, d, _ in items],
                          pa.struct([('bytes', pa.binary()),
                                     ('path', pa.string())]))
    else:  # paths relative to the parquet file's folder
        column = pa.array([f'{k}.{e}' for k, e, _, _ in items])
    return pa.table({'image': column,
                     'prompt': [c for _, _, _, c in items]})


@pytest.fixture(scope='module')
def data(tmp_path_factory, images):
    root = tmp_path_factory.mktemp('containers')
    folder = root / 'folder'
    folder.mkdir()
    for key, ext, blob, _ in images:
        (folder / f'{key}.{ext}').write_bytes(blob)
    write_shards(root / 'shards', images)
    (root / 'parquet').mkdir()
    pq.write_table(image_table(images[:8]),
                   root / 'parquet' / 'train-00000-of-00002.parquet',
                   row_group_size=3)
    pq.write_table(image_table(images[8:], 'struct'),
                   root / 'parquet' / 'train-00001-of-00002.parquet',
                   row_group_size=3)
    pq.write_table(image_table(images, 'paths'), folder / 'paths.parquet',
                   row_group_size=5)
    write_save_to_disk(root / 'hf_saved', images)
    return root


def write_save_to_disk(root, items):
    """The folder ``Dataset.save_to_disk`` writes: arrow stream files,
    ``state.json``, ``dataset_info.json``, in a DatasetDict split."""
    split = root / 'train'
    split.mkdir(parents=True)
    table = image_table(items, 'struct')
    names = []
    for i, part in enumerate((table.slice(0, 5), table.slice(5))):
        name = f'data-{i:05d}-of-00002.arrow'
        with pa.OSFile(str(split / name), 'wb') as sink, \
                pa.ipc.new_stream(sink, part.schema) as writer:
            for batch in part.to_batches(max_chunksize=2):
                writer.write_batch(batch)
        names.append(name)
    (split / 'state.json').write_text(json.dumps(dict(
        _data_files=[dict(filename=n) for n in names], _split='train')))
    (split / 'dataset_info.json').write_text(json.dumps(dict(features=dict(
        image=dict(_type='Image'), prompt=dict(_type='Value')))))
    (root / 'dataset_dict.json').write_text(json.dumps(dict(
        splits=['train'])))


def sources(data):
    return dict(
        folder=dict(type='ImageFolder', root=str(data / 'folder')),
        tar=dict(type='TarShards', shards=str(data / 'shards')),
        parquet=dict(type='ParquetImages',
                     files=str(data / 'parquet' / '*.parquet')),
        parquet_paths=dict(type='ParquetImages',
                           files=str(data / 'folder' / 'paths.parquet')),
        hf_saved=dict(type='LocalHFDataset', path=str(data / 'hf_saved')),
        hf_parquet=dict(type='LocalHFDataset', path=str(data / 'parquet'),
                        split='train'))


def stream(cfg, steps, batch_size=4, rank=0, world_size=1, start=0,
           **dataset_kwargs):
    dataset = MultiSourceDataset(dict(recon=dict(cfg, pipeline=VIEWS)),
                                 **dataset_kwargs)
    sampler = MultiSourceSampler(dataset, seed=7)
    sampler.rank, sampler.world_size = rank, world_size
    batches = MultiSourceBatchSampler(sampler, batch_size)
    batches.set_start_iter(start)
    out = []
    for keys in islice(batches, steps):
        batch = collate_by_source([dataset[k] for k in keys])
        out.append(([k.index for k in keys],
                    batch['inputs']['recon']['gen_pixels']))
    return out


def test_same_samples_same_order_as_the_folder(data):
    # 5 steps of 4 cross an epoch boundary (12 images).
    reference = stream(sources(data)['folder'], 5)
    for name, cfg in sources(data).items():
        if name == 'folder':
            continue
        got = stream(cfg, 5)
        for (ref_index, ref_pixels), (index, pixels) in zip(reference, got):
            assert index == ref_index, name
            assert torch.equal(pixels, ref_pixels), name


def test_resume_mid_epoch_lands_on_the_same_sample(data):
    cfg = sources(data)['tar']
    whole = stream(cfg, 6, batch_size=3)
    for start in (1, 3):  # inside the first epoch; inside the second
        resumed = stream(cfg, 6 - start, batch_size=3, start=start)
        for (i0, p0), (i1, p1) in zip(whole[start:], resumed):
            assert i0 == i1 and torch.equal(p0, p1)


@pytest.mark.parametrize('name', ['tar', 'parquet'])
def test_two_ranks_see_disjoint_complete_slices(data, name):
    cfg = sources(data)[name]
    single = stream(cfg, 4, batch_size=6)
    ranks = [stream(cfg, 4, batch_size=3, rank=r, world_size=2)
             for r in range(2)]
    for step, (whole, part0, part1) in enumerate(zip(single, *ranks)):
        assert whole[0] == part0[0] + part1[0]
        assert torch.equal(whole[1], torch.cat([part0[1], part1[1]]))
        if step % 2 == 1:  # every 2 steps is one epoch of 12
            seen = [i for s in (step - 1, step) for r in ranks
                    for i in r[s][0]]
            assert sorted(seen) == list(range(N))


def test_data_loader_workers_read_shards_in_place(data):
    # Forked workers open their own shard handles.
    dataset = MultiSourceDataset(dict(recon=dict(sources(data)['tar'],
                                                 pipeline=VIEWS)))
    dataset.sources['recon'].raw(0)  # a handle open before the fork
    sampler = MultiSourceSampler(dataset, seed=7)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=MultiSourceBatchSampler(sampler, 4),
        num_workers=2, collate_fn=collate_by_source)
    got = [b['inputs']['recon']['gen_pixels'] for b in islice(loader, 3)]
    want = [p for _, p in stream(sources(data)['tar'], 3)]
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_tar_index_is_cached_beside_the_shard_and_reused(data, monkeypatch):
    source = TarShards(data / 'shards')
    assert len(source) == N and len(source.paths) == 2
    assert (data / 'shards' / 'shard-00000.tar.idx.json').is_file()

    def fail(path):
        raise AssertionError(f'rebuilt {path}')

    monkeypatch.setattr(tar_module, 'build_index', fail)
    assert len(TarShards(data / 'shards')) == N  # read from the cache


def test_tar_index_dir(tmp_path, images):
    write_shards(tmp_path / 's', images[:3])
    TarShards(tmp_path / 's', index_dir=tmp_path / 'idx')
    assert not list((tmp_path / 's').glob('*.idx.json'))
    assert len(list((tmp_path / 'idx').glob('*shard-00000.tar.idx.json'))) \
        == 1


def test_tar_captions_feed_caption_and_conversations(data, images):
    for caption_from in ('txt', 'json'):
        source = TarShards(data / 'shards', caption_from=caption_from)
        sample = source.raw(9)
        assert sample['caption'] == images[9][3]
        assert sample['conversations'] == [('Describe this image in detail.',
                                            images[9][3])]
        assert sample['img_name'].endswith('shard-00001.tar[0009.png]')
    # Images alone (the default): RecA's input, nothing else.
    assert set(TarShards(data / 'shards').raw(0)) == {'img_bytes',
                                                      'img_name'}


def test_tar_json_conversations(tmp_path, images):
    path = tmp_path / 'conv' / 'a.tar'
    path.parent.mkdir()
    with tarfile.open(path, 'w') as tar:
        add(tar, 'k.png', images[0][2])
        add(tar, 'k.json', json.dumps(dict(conversations=[
            dict(**{'from': 'human'}, value='<image>\nWhat?'),
            dict(**{'from': 'gpt'}, value='Shapes.')])).encode())
    sample = TarShards(path, caption_from='json',
                       caption_field='conversations').raw(0)
    assert sample['conversations'] == [('What?', 'Shapes.')]


def test_tar_missing_caption_member_is_named(tmp_path, images):
    path = tmp_path / 'nocap' / 'a.tar'
    path.parent.mkdir()
    with tarfile.open(path, 'w') as tar:
        add(tar, 'a.png', images[0][2])
    with pytest.raises(ValueError, match=r'a\.tar\[a\.txt\]'):
        TarShards(path, caption_from='txt')


def test_parquet_captions(data, images):
    source = ParquetImages(data / 'parquet', caption_column='prompt')
    sample = source.raw(10)
    assert sample['caption'] == images[10][3]
    assert sample['img_name'].endswith(
        'train-00001-of-00002.parquet (row group 0, row 2)')
    saved = LocalHFDataset(data / 'hf_saved', caption_column='prompt')
    assert saved.raw(6)['caption'] == images[6][3]


def test_corrupt_member_names_shard_and_member(tmp_path, images):
    items = list(images[:4])
    items[2] = (items[2][0], 'png', b'not a png at all' * 8, items[2][3])
    write_shards(tmp_path / 'bad', items)
    cfg = dict(type='TarShards', shards=str(tmp_path / 'bad'),
               pipeline=VIEWS)
    dataset = MultiSourceDataset(dict(recon=cfg))
    with pytest.raises(ImageLoadError, match=r'shard-00000\.tar\[0002\.png\]'):
        dataset[SampleKey('recon', 2, 0)]
    skipping = MultiSourceDataset(dict(recon=cfg), skip_bad_images=True)
    sample = skipping[SampleKey('recon', 2, 5)]
    assert sample['skipped'] == 1 and sample['draw'] == 5
    assert sample['img_name'].endswith('[0003.png]')
    batch = collate_by_source([skipping[SampleKey('recon', i, i)]
                               for i in range(4)])
    assert batch['data_samples']['skipped'] == 1


@pytest.mark.parametrize('cut', ['half', 'end_marker'])
def test_truncated_shard_names_the_place(tmp_path, images, cut):
    (path, ) = write_shards(tmp_path / 'cut', images[:4])
    blob = path.read_bytes()
    if cut == 'half':
        path.write_bytes(blob[:len(blob) // 2])
    else:  # every member complete, the end-of-archive blocks gone
        with tarfile.open(path) as tar:
            tar.getmembers()
            end = tar.offset
        path.write_bytes(blob[:end])
    with pytest.raises(ShardError) as info:
        TarShards(path)
    message = str(info.value)
    assert str(path) in message and 'truncated' in message
    assert "after member '" in message


def test_changed_or_missing_shard_is_detected(tmp_path, images):
    paths = write_shards(tmp_path / 'change', images[:6], per_shard=3)
    source = TarShards(tmp_path / 'change')
    source.raw(4)
    # Rewritten in place after indexing (other images, other offsets).
    write_shards(tmp_path / 'change', images[6:12], per_shard=3)
    os.utime(paths[1], ns=(1, 1))
    with pytest.raises(ShardError, match='shard-00001.tar.*changed'):
        source.raw(4)
    # A new source re-indexes the stale shard and reads the new content.
    assert TarShards(tmp_path / 'change').raw(4)['img_bytes'] == images[10][2]
    paths[0].unlink()
    source._files.clear()  # no handle open: the next read opens the path
    with pytest.raises(ShardError, match='shard-00000.tar.*disappeared'):
        source.raw(0)


def test_parquet_bad_rows_name_file_row_group_and_row(tmp_path, images):
    table = image_table(images[:6])
    blobs = table.column('image').to_pylist()
    blobs[4] = b'garbage' * 10
    blobs[1] = None
    table = table.set_column(0, 'image', pa.array(blobs, pa.binary()))
    path = tmp_path / 'bad.parquet'
    pq.write_table(table, path, row_group_size=3)
    cfg = dict(type='ParquetImages', files=str(path), pipeline=VIEWS)
    dataset = MultiSourceDataset(dict(recon=cfg))
    with pytest.raises(ImageLoadError,
                       match=r'bad\.parquet \(row group 1, row 1\)'):
        dataset[SampleKey('recon', 4, 0)]
    with pytest.raises(ImageLoadError,
                       match=r'bad\.parquet \(row group 0, row 1\).*no image'):
        dataset[SampleKey('recon', 1, 0)]
    skipping = MultiSourceDataset(dict(recon=cfg), skip_bad_images=True)
    batch = collate_by_source([skipping[SampleKey('recon', i, i)]
                               for i in range(6)])
    assert batch['data_samples']['skipped'] == 2


def test_parquet_missing_column_names_file_and_columns(data):
    with pytest.raises(ValueError, match=r"no column \['img'\].*'image'"):
        ParquetImages(data / 'parquet', image_column='img')


def test_parquet_row_group_cache_stays_bounded(data):
    source = ParquetImages(data / 'parquet', cache_pieces=2)
    for i in range(N):
        source.raw(i)
    assert len(source._cache) == 2


@pytest.mark.parametrize('hub_id', ['brivangl/midjourney-v6-llava',
                                    'BLIP3o/BLIP3o-60k'])
def test_hub_ids_are_refused_with_the_download_command(hub_id, tmp_path,
                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    for build in (lambda: LocalHFDataset(hub_id),
                  lambda: ParquetImages(hub_id), lambda: TarShards(hub_id)):
        with pytest.raises(FileNotFoundError) as info:
            build()
        assert (f'huggingface-cli download {hub_id} --repo-type dataset '
                '--local-dir') in str(info.value)
    # A path that merely does not exist is not called a hub id.
    (tmp_path / 'data').mkdir()
    for path in ('./data/nothing', 'data/nothing', str(tmp_path / 'x/y')):
        with pytest.raises(FileNotFoundError) as info:
            LocalHFDataset(path)
        assert 'huggingface-cli' not in str(info.value)


def test_missing_pyarrow_names_the_extra(data, monkeypatch):
    monkeypatch.setitem(sys.modules, 'pyarrow', None)
    monkeypatch.setitem(sys.modules, 'pyarrow.parquet', None)
    for build in (lambda: ParquetImages(data / 'parquet'),
                  lambda: LocalHFDataset(data / 'hf_saved')):
        with pytest.raises(ImportError, match=r"reca_toolkit\[data\]"):
            build()
    assert len(TarShards(data / 'shards')) == N  # tar needs no extra


def test_image_folder_reference_is_the_fixture(data):
    # The reference order: the folder sorted by path is key order.
    assert [p.stem for p in ImageFolder(data / 'folder').files] == \
        [f'{i:04d}' for i in range(N)]


@pytest.mark.parametrize('config,key,folder', [
    ('blip3o_60k_shards', 'shards', 'shards'),
    ('text_to_image_2m_shards', 'shards', 'shards'),
    ('midjourney_v6_parquet', 'path', 'parquet')])
def test_ready_configs_pass_the_check_and_build(data, config, key, folder):
    from mmengine.config import Config

    from reca_toolkit.engine.config_check import check_config
    from reca_toolkit.registry import DATASETS
    cfg = Config.fromfile(str(REPO / f'configs/_base_/datasets/{config}.py'))
    cfg.train_dataloader.dataset.sources.recon[key] = str(data / folder)
    check_config(cfg)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    sample = dataset[SampleKey('recon', 3, 3)]
    assert sample['gen_pixels'].shape == (3, 384, 384)


def _rank_reads(rank, world_size, port, shards, out):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    try:
        from reca_toolkit.utils import register_all_modules
        register_all_modules()
        dataset = MultiSourceDataset(dict(recon=dict(
            type='TarShards', shards=shards, pipeline=[dict(
                type='LoadImage')])))
        # seed=None: rank 0's seed, broadcast; rank and world size from the
        # process group.
        batches = iter(MultiSourceBatchSampler(MultiSourceSampler(dataset),
                                               3))
        names = [[dataset[k]['img_name'] for k in next(batches)]
                 for _ in range(4)]
        (out / f'rank{rank}.json').write_text(json.dumps(names))
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_ranks_read_disjoint_complete_slices(data, tmp_path):
    import torch.multiprocessing as mp
    from test_distributed import free_port
    shards = str(data / 'shards')
    TarShards(shards)  # indexed once, before the ranks start
    mp.start_processes(_rank_reads, nprocs=2, start_method='spawn',
                       args=(2, free_port(), shards, tmp_path))
    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text())
             for r in range(2)]
    for epoch in range(2):  # 2 steps x 2 ranks x 3 = one epoch of 12
        seen = [n for r in ranks for step in r[2 * epoch:2 * epoch + 2]
                for n in step]
        assert len(set(seen)) == N
        assert {n.rsplit('[', 1)[1][:4] for n in seen} == {
            f'{i:04d}' for i in range(N)}


def test_data_benchmark_measures_every_source(tmp_path):
    from reca_toolkit.engine.data_benchmark import run
    results = run(tmp_path, image_sizes=(32, ), num_images=6, num_samples=2,
                  views=((16, 16, 'center_crop'), ), row_group_sizes=(4, ),
                  index_members=40, rounds=1)
    assert results['index']['members'] == 40
    assert {r['source'] for r in results['loader']} == {
        'folder', 'shards', 'parquet_rg4'}
    assert all(r['samples_per_s'] > 0 for r in results['loader'])


def test_changed_or_missing_parquet_file_is_detected(tmp_path, images):
    path = tmp_path / 'p.parquet'
    pq.write_table(image_table(images[:6]), path, row_group_size=2)
    source = ParquetImages(path, cache_pieces=1)
    source.raw(0)
    pq.write_table(image_table(images[:4]), path, row_group_size=2)
    with pytest.raises(ShardError, match=r'p\.parquet.*changed'):
        source.raw(5)
    path.unlink()
    with pytest.raises(ShardError, match=r'p\.parquet.*disappeared'):
        source.raw(3)


def test_captions_from_shards_and_parquet_feed_the_objectives(data):
    """RecA from shard images alone, image-to-text from the shards' .txt,
    text-to-image from a parquet caption column: one loss step."""
    from conftest import build_tiny_model, to_float
    views = [dict(type='LoadImage'),
             dict(type='ImageViews', und_size=64, gen_size=64)]
    dataset = MultiSourceDataset(dict(
        recon=dict(type='TarShards', shards=str(data / 'shards'),
                   pipeline=views),
        i2t=dict(type='TarShards', shards=str(data / 'shards'),
                 caption_from='txt', pipeline=views),
        t2i=dict(type='ParquetImages', files=str(data / 'parquet'),
                 caption_column='prompt', pipeline=views)))
    batches = MultiSourceBatchSampler(MultiSourceSampler(dataset, seed=0), 6)
    inputs = collate_by_source([dataset[k] for k in next(iter(batches))])[
        'inputs']
    for batch in inputs.values():
        for key in ('und_pixels', 'gen_pixels'):
            batch[key] = to_float(batch[key])
    assert set(inputs['recon']) == {'img_name', 'draw', 'und_pixels',
                                    'gen_pixels'}
    model = build_tiny_model(objectives=dict(
        recon=dict(type='ReconstructionAlignment'),
        i2t=dict(type='ImageToText'), t2i=dict(type='TextToImage')))
    losses = model.loss(inputs)
    assert {'loss_recon', 'loss_i2t', 'loss_t2i'} <= set(losses)
    assert all(torch.isfinite(v) for k, v in losses.items()
               if k.startswith('loss'))
