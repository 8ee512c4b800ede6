"""Sample images from a trained model: text prompts and reconstructions.

    python tools/generate.py CONFIG CHECKPOINT [--prompt TEXT ...]
        [--reconstruct IMAGE ...] --out DIR [--seed N] [--device DEV]
        [--guidance-scale G] [--temperature T]
        [--sampling KEY=VALUE ...] [--amp]

Writes one PNG per sample plus a grid per kind into DIR. ``--sampling``
passes any setting of the model's sampler (Harmon: ``num_iter=64
num_sampling_steps=100 cfg_schedule=constant``; Janus: ``top_k=...``);
defaults are the config's, which are the authors' settings.
"""
import argparse
import os
import sys
from pathlib import Path

from mmengine.config import DictAction

# projects/ live in the repository: make `projects.<name>` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('--prompt', nargs='+', default=[],
                        help='text prompts to generate')
    parser.add_argument('--reconstruct', nargs='+', default=[],
                        help='image files to reconstruct')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--guidance-scale', type=float)
    parser.add_argument('--temperature', type=float)
    parser.add_argument('--sampling', nargs='+', action=DictAction,
                        default={}, help="other sampler settings, "
                        "e.g. num_iter=16 num_sampling_steps=50")
    parser.add_argument('--amp', action='store_true',
                        help='sample under bf16 autocast')
    args = parser.parse_args()
    if not args.prompt and not args.reconstruct:
        parser.error('give --prompt and/or --reconstruct')
    return args


def main():
    args = parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from reca_toolkit.engine.inference import load_model, write_samples
    model, cfg = load_model(args.config, args.checkpoint, args.device)
    sampling = dict(args.sampling, **{k: v for k, v in dict(
        guidance_scale=args.guidance_scale,
        temperature=args.temperature).items() if v is not None})
    for path in write_samples(model, cfg, args.out, prompts=args.prompt,
                              images=args.reconstruct, seed=args.seed,
                              amp=args.amp, **sampling):
        print(path)


if __name__ == '__main__':
    main()
