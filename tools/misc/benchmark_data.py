"""Loader samples/s per worker from tar shards and parquet vs a folder.

    python tools/misc/benchmark_data.py --work-dir DIR [--image-sizes 512 1024]
        [--num-images 200] [--num-samples 200] [--row-group-sizes 100 10]
        [--index-members 10000] [--rounds 3] [--json OUT]

Writes the same synthetic JPEGs as a folder, WebDataset tar shards and a
parquet file under DIR, reads each through MultiSourceDataset with
LoadImage + ImageViews (Janus-Pro's 384 px views, Harmon's 512 px) in the
sampler's shuffled order, in this process, and times indexing one tar shard
of --index-members members (docs/performance.md, docs/data.md).
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--image-sizes', type=int, nargs='+',
                        default=[512, 1024])
    parser.add_argument('--num-images', type=int, default=200)
    parser.add_argument('--num-samples', type=int, default=200)
    parser.add_argument('--row-group-sizes', type=int, nargs='+',
                        default=[100, 10])
    parser.add_argument('--index-members', type=int, default=10_000)
    parser.add_argument('--rounds', type=int, default=3,
                        help='sources take turns; each keeps its best round')
    parser.add_argument('--json', help='write the results here too')
    args = parser.parse_args()
    from reca_toolkit.engine.data_benchmark import run
    from reca_toolkit.utils import register_all_modules
    register_all_modules()
    results = run(args.work_dir, args.image_sizes, args.num_images,
                  args.num_samples, row_group_sizes=args.row_group_sizes,
                  index_members=args.index_members, rounds=args.rounds)
    index = results['index']
    print(f"index: {index['members']} members, {index['build_s']:.3f} s to "
          f"build, {index['cached_load_s']:.3f} s to load cached")
    print('image  views              source         samples/s per worker')
    for row in results['loader']:
        print(f"{row['image_size']:5d}  {row['und_size']}/{row['gen_size']} "
              f"{row['mode']:<12} {row['source']:<14} "
              f"{row['samples_per_s']:8.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
