"""Cache a training source's understanding features and VQ targets.

    python tools/misc/cache_features.py CONFIG --out DIR [--source recon]
        [--checkpoint CKPT] [--batch-size N] [--shard-size N]
        [--num-workers N] [--device DEV] [--cfg-options key=value ...]

Runs the frozen understanding encoder (SigLIP, before the trainable aligner)
and the frozen VQ tokenizer over every image of the source, in order, and
writes safetensors shards plus meta.json to DIR. Train from it by replacing
the source with dict(type='FeatureCache', root=DIR) (docs/performance.md).
"""
import argparse
import json
import os
import sys
from pathlib import Path

from mmengine.config import DictAction

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='training config')
    parser.add_argument('--out', required=True, help='cache folder to write')
    parser.add_argument('--source', default='recon',
                        help='training source to cache (default recon)')
    parser.add_argument('--checkpoint', help='weights to load first')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--shard-size', type=int, default=1024,
                        help='samples per safetensors shard')
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--device', help='default: cuda if available')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from reca_toolkit.engine import load_config
    from reca_toolkit.engine.cache_features import cache_features
    from reca_toolkit.utils import register_all_modules
    register_all_modules()
    cfg = load_config(args.config, args.cfg_options)
    meta = cache_features(
        cfg, args.out, source=args.source, checkpoint=args.checkpoint,
        batch_size=args.batch_size, shard_size=args.shard_size,
        num_workers=args.num_workers, device=args.device)
    print(json.dumps(meta, indent=2))


if __name__ == '__main__':
    main()
