"""Sample images from a trained model: text prompts and reconstructions.

    python tools/generate.py CONFIG CHECKPOINT [--prompt TEXT ...]
        [--reconstruct IMAGE ...] --out DIR [--seed N] [--device DEV]
        [--guidance-scale G] [--temperature T] [--amp]

Writes one PNG per sample plus a grid per kind into DIR.
"""
import argparse
import os


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
    sampling = {k: v for k, v in dict(
        guidance_scale=args.guidance_scale,
        temperature=args.temperature).items() if v is not None}
    for path in write_samples(model, cfg, args.out, prompts=args.prompt,
                              images=args.reconstruct, seed=args.seed,
                              amp=args.amp, **sampling):
        print(path)


if __name__ == '__main__':
    main()
