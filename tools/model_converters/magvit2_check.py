"""Check reca_toolkit's MAGVIT-v2 tokenizer against Show-o's own code.

    python tools/model_converters/magvit2_check.py keys --showo-repo SHOWO \
        [--write tests/fixtures/magvitv2_keys.txt]
    python tools/model_converters/magvit2_check.py reference \
        --showo-repo SHOWO \
        --write tests/fixtures/magvitv2_reference.safetensors
    python tools/model_converters/magvit2_check.py folder MAGVITV2_FOLDER \
        [--showo-repo SHOWO] [--size 256]

SHOWO is a local checkout of showlab/Show-o; only its
``models/modeling_magvitv2.py`` and ``models/common_modules.py`` are
imported (with einops), from that checkout, at run time. Its
``modeling_utils`` (diffusers' ModelMixin) and ``misc`` (omegaconf and
jaxtyping type names) are replaced by plain stand-ins, which changes no
module or parameter.

``keys`` compares the state-dict layout of upstream's real-size ``MAGVITv2()``
with ours (both on the meta device); ``reference`` writes the test fixture
of ``tests/test_magvit2.py``; ``folder`` loads a published folder (e.g. a
local copy of showlab/magvitv2) strictly and, with ``--showo-repo``,
compares codes and reconstructions with upstream's on a random image.
"""
import argparse
import importlib
import sys
import types
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]


def import_upstream(showo_repo):
    """Show-o's ``models.modeling_magvitv2``, as package ``showo_models``."""
    models = Path(showo_repo) / 'models'
    if not (models / 'modeling_magvitv2.py').is_file():
        raise FileNotFoundError(f'{models} has no modeling_magvitv2.py')
    package = types.ModuleType('showo_models')
    package.__path__ = [str(models)]
    utils = types.ModuleType('showo_models.modeling_utils')
    utils.ModelMixin = nn.Module
    utils.ConfigMixin = object
    utils.register_to_config = lambda init: init
    misc = types.ModuleType('showo_models.misc')
    misc.List = list
    misc.__all__ = ['List']
    sys.modules.update({'showo_models': package,
                        'showo_models.modeling_utils': utils,
                        'showo_models.misc': misc})
    return importlib.import_module('showo_models.modeling_magvitv2')


def layout(model):
    return {k: (tuple(v.shape), str(v.dtype).removeprefix('torch.'))
            for k, v in model.state_dict().items()}


def check_keys(args, MAGVITv2Tokenizer):
    upstream = import_upstream(args.showo_repo)
    with torch.device('meta'):
        theirs, ours = upstream.MAGVITv2(), MAGVITv2Tokenizer()
    theirs, count = layout(theirs), sum(p.numel() for p in ours.parameters())
    diff = sorted(set(theirs.items()) ^ set(layout(ours).items()))
    print(f'{len(theirs)} entries, {count:,} parameters; '
          + (f'DIFFERENT: {diff}' if diff else 'layouts identical'))
    if args.write:
        Path(args.write).write_text(''.join(
            f'{k} {"x".join(map(str, shape))} {dtype}\n'
            for k, (shape, dtype) in theirs.items()))
        print(f'wrote {args.write}')
    return bool(diff)


def write_reference(args, MAGVITv2Tokenizer):
    from safetensors.torch import save_file
    sys.path.insert(0, str(REPO / 'tests'))
    from test_magvit2 import TINY, reference_weights
    upstream = import_upstream(args.showo_repo)
    ours = MAGVITv2Tokenizer(**TINY)
    theirs = nn.Module()
    theirs.encoder = upstream.VQGANEncoder(
        ch=TINY['ch'], ch_mult=list(TINY['encoder_ch_mult']),
        num_res_blocks=list(TINY['encoder_num_res_blocks']),
        z_channels=TINY['z_channels'])
    theirs.decoder = upstream.VQGANDecoder(
        ch=TINY['ch'], ch_mult=list(TINY['decoder_ch_mult']),
        num_res_blocks=list(TINY['decoder_num_res_blocks']),
        z_channels=TINY['z_channels'])
    theirs.quantize = upstream.LFQuantizer(codebook_dim=TINY['z_channels'])
    theirs.load_state_dict(reference_weights(ours))
    theirs.eval()
    pixels = torch.rand(1, 3, 32, 48,
                        generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        margin = theirs.encoder(pixels).abs().min().item()
        codes = upstream.MAGVITv2.get_code(theirs, pixels)
        decoded = upstream.MAGVITv2.decode_code(theirs, codes, shape=(8, 12))
    save_file({'pixels': pixels, 'codes': codes, 'decoded': decoded},
              args.write)
    print(f'wrote {args.write}; smallest |latent| {margin:.2e}')
    return 0


def check_folder(args, MAGVITv2Tokenizer):
    ours = MAGVITv2Tokenizer.from_pretrained(args.path)
    count = sum(p.numel() for p in ours.parameters())
    print(f'{args.path}: loaded strictly, {count:,} parameters, '
          f'{ours.num_codes} codes, {ours.downsample} px per code')
    if not args.showo_repo:
        return 0
    theirs = import_upstream(args.showo_repo).MAGVITv2().eval()
    theirs.load_state_dict(ours.state_dict())
    pixels = torch.rand(1, 3, args.size, args.size,
                        generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        codes = theirs.get_code(pixels)
        decoded = theirs.decode_code(codes).clamp(-1, 1)
    same = torch.equal(codes, ours.encode(pixels))
    error = (decoded - ours.decode(codes)).abs().max().item()
    print(f'codes identical: {same}; decode max abs diff {error:.2e}')
    return int(not same)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('command', choices=['keys', 'reference', 'folder'])
    parser.add_argument('path', nargs='?', help='the folder, for `folder`')
    parser.add_argument('--showo-repo', help='local showlab/Show-o checkout')
    parser.add_argument('--write', help='fixture to write (keys, reference)')
    parser.add_argument('--size', type=int, default=256)
    args = parser.parse_args()
    if args.command in ('keys', 'reference') and not args.showo_repo:
        parser.error(f'{args.command} needs --showo-repo')
    if args.command == 'reference' and not args.write:
        parser.error('reference needs --write')
    if args.command == 'folder' and not args.path:
        parser.error('folder needs the folder path')
    sys.path.insert(0, str(REPO))
    from reca_toolkit.models.encoders.magvit2 import MAGVITv2Tokenizer
    command = dict(keys=check_keys, reference=write_reference,
                   folder=check_folder)[args.command]
    sys.exit(command(args, MAGVITv2Tokenizer))


if __name__ == '__main__':
    main()
