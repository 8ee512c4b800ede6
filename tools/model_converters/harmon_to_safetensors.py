"""Convert a Harmon folder's pickles to safetensors, once.

    python tools/model_converters/harmon_to_safetensors.py FOLDER \
        --variant 1.5b

Writes FOLDER/kl16.safetensors (diffusers AutoencoderKL keys) and
FOLDER/harmon_{variant}.safetensors beside kl16.ckpt and harmon_{variant}.pth,
reading the pickles with torch.load(weights_only=True); files already
converted are kept. reca_toolkit then reads the safetensors files.
"""
import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder', help='folder with kl16.ckpt and '
                        'harmon_{variant}.pth (from wusize/harmon)')
    parser.add_argument('--variant', default='1.5b', choices=['0.5b', '1.5b'])
    args = parser.parse_args()
    from reca_toolkit.models.harmon_weights import convert_harmon_folder
    written = convert_harmon_folder(args.folder, args.variant)
    print('\n'.join(f'wrote {path}' for path in written)
          or f'{args.folder}: already converted')


if __name__ == '__main__':
    main()
