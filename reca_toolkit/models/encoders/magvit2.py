"""MAGVIT-v2 image tokenizer with lookup-free quantization (LFQ).

Show-o generates the codes of this tokenizer: 2 ** 13 = 8192 codes, one per
16 x 16 pixel patch (256 codes at 256 px, 1024 at 512 px), published as the
``showlab/magvitv2`` folder. No transformers or diffusers class exists, so it
is written here from the MAGVIT-v2 paper (Yu et al. 2023, "Language Model
Beats Diffusion -- Tokenizer is Key to Visual Generation") with the module
layout of ``showlab/Show-o:models/modeling_magvitv2.py``, so that the
published state dict loads key for key:

- ``encoder``: a taming-style VQGAN conv ResNet stack (``conv_in``,
  ``down.{level}.block.{i}``, ``down.{level}.downsample``, ``mid``,
  ``norm_out``, ``conv_out``) followed by a 1x1 ``quant_conv`` that lives
  inside the encoder.
- ``quantize``: LFQ. Each of the ``z_channels`` latent channels is quantized
  to +1 (value > 0) or -1 on its own; the code is the integer whose binary
  digits are those bits, **channel 0 the most significant**. Its two
  persistent buffers (``embedding``, every code's +-1 vector, and
  ``power_vals``, the bit weights) are part of the published state dict.
- ``decoder``: a 1x1 ``post_quant_conv`` then the mirror stack (``conv_in``,
  ``mid``, ``up.{level}.block.{i}``, ``up.{level}.upsample``, ``norm_out``,
  ``conv_out``). Unlike the paper's decoder, Show-o's has no adaptive group
  norm and upsamples by nearest-neighbour + conv, and its encoder and decoder
  have different channel multipliers and depths (see ``MAGVITV2_CONFIG``).

No level of the published configuration has attention (upstream's
``attn_resolutions=[5]`` never matches a feature-map size), only ``mid``.
"""
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reca_toolkit.engine.compat import load_local_checkpoint
from reca_toolkit.registry import ENCODERS

# The published tokenizer (showlab/Show-o:models/modeling_magvitv2.py, the
# defaults of VQGANEncoder, VQGANDecoder and LFQuantizer; its MAGVITv2 takes
# no arguments, so the published config.json carries none of these keys).
MAGVITV2_CONFIG = dict(
    ch=128,
    encoder_ch_mult=(1, 2, 2, 4, 4),
    encoder_num_res_blocks=(4, 3, 4, 3, 4),
    decoder_ch_mult=(1, 1, 2, 2, 4),
    decoder_num_res_blocks=(4, 4, 3, 4, 3),
    z_channels=13,
    in_channels=3,
    out_channels=3,
)
CLASS_NAME = 'MAGVITv2'  # ``_class_name`` of the published config.json
# Weight files tried in order; the published folders are written by Show-o's
# copy of diffusers' ModelMixin, which names them pytorch_model.*.
WEIGHT_FILES = ('pytorch_model.safetensors',
                'diffusion_pytorch_model.safetensors', 'model.safetensors',
                'pytorch_model.bin', 'diffusion_pytorch_model.bin')


def group_norm(channels):
    # Fixed at 32 groups in the published model: widths must be multiples.
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus a 1x1 ``nin_shortcut`` when the
    width changes."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = (nn.Conv2d(in_channels, out_channels, 1)
                             if in_channels != out_channels else None)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1 convs for q, k, v
    and the output projection, residual."""

    def __init__(self, channels):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (proj(y).flatten(2).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class MidBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero padding on the right and bottom only
    (the taming VQGAN convention), so even sizes halve exactly."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class Level(nn.Module):
    """One resolution of the encoder or decoder: ``block`` ResNet blocks,
    then ``downsample`` or ``upsample`` (``resample='down'``/``'up'``), if
    any; the attribute names are the published keys."""

    def __init__(self, in_channels, out_channels, num_blocks,
                 resample=None):
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels)
            for i in range(num_blocks))
        self.resample = f'{resample}sample' if resample else None
        if resample == 'down':
            self.downsample = Downsample(out_channels)
        elif resample == 'up':
            self.upsample = Upsample(out_channels)

    def forward(self, x):
        for block in self.block:
            x = block(x)
        if self.resample:
            x = getattr(self, self.resample)(x)
        return x


class MAGVITv2Encoder(nn.Module):
    """Pixels ``[B, in, H, W]`` -> continuous latents ``[B, z, H/f, W/f]``
    with ``f = 2 ** (levels - 1)``."""

    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, in_channels):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch] + [ch * m for m in ch_mult]
        last = len(ch_mult) - 1
        self.down = nn.ModuleList(
            Level(widths[i], widths[i + 1], num_res_blocks[i],
                  'down' if i < last else None)
            for i in range(len(ch_mult)))
        self.mid = MidBlock(widths[-1])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], z_channels, 3, padding=1)
        self.quant_conv = nn.Conv2d(z_channels, z_channels, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.conv_out(F.silu(self.norm_out(self.mid(h))))
        return self.quant_conv(h)


class MAGVITv2Decoder(nn.Module):
    """+-1 latents ``[B, z, h, w]`` -> pixels ``[B, out, h*f, w*f]``.

    ``up`` is indexed by resolution like the encoder's ``down`` (``up.0`` is
    the full-resolution level) and runs from the last index to the first.
    """

    def __init__(self, ch, ch_mult, num_res_blocks, z_channels,
                 out_channels):
        super().__init__()
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 1)
        widths = [ch * m for m in ch_mult]
        self.conv_in = nn.Conv2d(z_channels, widths[-1], 3, padding=1)
        self.mid = MidBlock(widths[-1])
        # Each level's input is the next-lower resolution's output.
        inputs = widths[1:] + widths[-1:]
        self.up = nn.ModuleList(
            Level(inputs[i], widths[i], num_res_blocks[i],
                  'up' if i > 0 else None)
            for i in range(len(ch_mult)))
        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class LookupFreeQuantizer(nn.Module):
    """LFQ over ``bits`` channels: sign bits <-> integer codes.

    Bit ``c`` of a code is channel ``c`` of the latent, weighted
    ``2 ** (bits - 1 - c)`` (channel 0 is the most significant bit); a
    channel is 1 where the latent is > 0, so an exact 0 is bit 0 (-1).
    """

    def __init__(self, bits):
        super().__init__()
        self.bits = bits
        weights = 2 ** torch.arange(bits - 1, -1, -1)
        codes = torch.arange(2 ** bits)
        # Persistent, as in the published state dict (loaded, then checked).
        self.register_buffer(
            'embedding',
            ((codes[:, None] // weights) % 2).float() * 2 - 1)
        self.register_buffer('power_vals', weights)

    @property
    def num_codes(self):
        return self.embedding.shape[0]

    def codes(self, latents):
        """``[B, bits, h, w]`` -> ``[B, h * w]`` int64, raster order."""
        bits = (latents > 0).long()
        # Integer sum: exact for any width, unlike a bf16 matmul.
        return (bits * self.power_vals[:, None, None]).sum(1).flatten(1)

    def latents(self, codes, grid):
        """``[B, h * w]`` codes -> their ``[B, bits, h, w]`` +-1 latents."""
        h, w = grid
        return (self.embedding[codes].unflatten(1, (h, w))
                .permute(0, 3, 1, 2).contiguous())


def _check_config(config, source):
    unknown = sorted(set(config) - set(MAGVITV2_CONFIG))
    if unknown:
        raise ValueError(f'{source}: unknown MAGVIT-v2 config keys {unknown}; '
                         f'valid keys: {sorted(MAGVITV2_CONFIG)}')
    merged = {**MAGVITV2_CONFIG, **config}
    for part in ('encoder', 'decoder'):
        mult = merged[f'{part}_ch_mult']
        depth = merged[f'{part}_num_res_blocks']
        if len(mult) != len(depth):
            raise ValueError(
                f'{source}: {part}_ch_mult has {len(mult)} levels but '
                f'{part}_num_res_blocks has {len(depth)}')
        for m in mult:
            if (merged['ch'] * m) % 32:
                raise ValueError(
                    f'{source}: {part} width ch * {m} = {merged["ch"] * m} '
                    'is not a multiple of the 32 GroupNorm groups')
    if len(merged['encoder_ch_mult']) != len(merged['decoder_ch_mult']):
        raise ValueError(
            f'{source}: the encoder has {len(merged["encoder_ch_mult"])} '
            f'levels and the decoder {len(merged["decoder_ch_mult"])}; they '
            'must match for the decoder to undo the downsampling')
    return merged


@ENCODERS.register_module()
class MAGVITv2Tokenizer(nn.Module):
    """Generation tokenizer: pixels in [-1, 1] <-> MAGVIT-v2 LFQ codes.

    Keyword arguments are the keys of ``MAGVITV2_CONFIG`` (defaults: the
    published model); the state dict has the published keys
    (``encoder.*``, ``quantize.embedding``, ``quantize.power_vals``,
    ``decoder.*``). Real weights come from :meth:`from_pretrained`.
    """

    def __init__(self, **config):
        super().__init__()
        self.config = _check_config(config, type(self).__name__)
        c = self.config
        self.encoder = MAGVITv2Encoder(
            c['ch'], c['encoder_ch_mult'], c['encoder_num_res_blocks'],
            c['z_channels'], c['in_channels'])
        self.decoder = MAGVITv2Decoder(
            c['ch'], c['decoder_ch_mult'], c['decoder_num_res_blocks'],
            c['z_channels'], c['out_channels'])
        self.quantize = LookupFreeQuantizer(c['z_channels'])

    @classmethod
    def from_config(cls, config, source='config'):
        """Build from a config.json dict: ``_``-prefixed metadata is
        dropped, a ``_class_name`` other than ``MAGVITv2`` is refused."""
        name = config.get('_class_name', CLASS_NAME)
        if name != CLASS_NAME:
            raise ValueError(f"{source}: _class_name '{name}' is not "
                             f"'{CLASS_NAME}'")
        return cls(**{k: v for k, v in config.items()
                      if not k.startswith('_')})

    @classmethod
    def from_pretrained(cls, folder, local_files_only=True,
                        dtype=torch.float32):
        """A published-layout folder: ``config.json`` + the weights (the
        first of ``WEIGHT_FILES`` present, else its one ``*.safetensors``).

        Local files only; ``.bin`` files load with
        ``torch.load(weights_only=True)``. Every key and shape must match;
        the error names the file and each missing, unexpected or
        mis-shaped key.
        """
        if not local_files_only:
            raise ValueError('MAGVITv2Tokenizer.from_pretrained loads local '
                             'folders only (local_files_only=True)')
        folder = Path(folder)
        config_file = folder / 'config.json'
        if not config_file.is_file():
            raise FileNotFoundError(
                f"'{folder}' is not a local MAGVIT-v2 folder: no config.json "
                '(hub ids are never downloaded)')
        config = json.loads(config_file.read_text())
        with torch.device('meta'):
            model = cls.from_config(config, source=str(config_file))
        weights = _weights_file(folder)
        model.load_weights(load_local_checkpoint(str(weights), 'cpu'),
                           source=str(weights))
        return model.to(dtype).eval()

    def load_weights(self, state_dict, source='state dict'):
        """Strict, assigning load (works on a meta-device model); the bit
        buffers must hold the documented bit order."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        mis_shaped = sorted(
            f'{k} {tuple(state_dict[k].shape)} != {tuple(own[k].shape)}'
            for k in set(own) & set(state_dict)
            if state_dict[k].shape != own[k].shape)
        if missing or unexpected or mis_shaped:
            raise ValueError(
                f"'{source}' does not match the MAGVIT-v2 layout: missing "
                f'{missing}, unexpected {unexpected}, shape mismatch '
                f'{mis_shaped}')
        table = {f'quantize.{k}': v for k, v in
                 LookupFreeQuantizer(self.quantize.bits).state_dict().items()}
        for key, value in table.items():
            if not torch.equal(state_dict[key].to(value), value):
                raise ValueError(
                    f"'{source}': {key} is not the LFQ table of channel 0 = "
                    'most significant bit')
        # The canonical tables, in their own dtypes (int64 bit weights).
        self.load_state_dict({**state_dict, **table}, assign=True)

    @property
    def num_codes(self):
        return self.quantize.num_codes

    @property
    def downsample(self):
        """Pixels per code side."""
        return 2 ** (len(self.config['encoder_ch_mult']) - 1)

    def grid(self, image_size):
        """``(h, w)`` in codes for an image of ``image_size`` (int or
        ``(height, width)``) pixels."""
        height, width = ((image_size, image_size)
                         if isinstance(image_size, int) else image_size)
        f = self.downsample
        if height % f or width % f:
            raise ValueError(f'image size {height}x{width} is not a multiple '
                             f'of the MAGVIT-v2 downsampling, {f} px')
        return height // f, width // f

    @torch.no_grad()
    def encode(self, pixels):
        """Pixels in [-1, 1], ``[B, 3, H, W]`` -> codes ``[B, h * w]``
        (int64, raster order, ``(h, w) = grid((H, W))``)."""
        self.grid(tuple(pixels.shape[-2:]))
        dtype = self.encoder.conv_in.weight.dtype
        return self.quantize.codes(self.encoder(pixels.to(dtype)))

    @torch.no_grad()
    def decode(self, codes, grid=None):
        """Codes ``[B, h * w]`` -> float32 pixels in [-1, 1],
        ``[B, 3, h * f, w * f]``; ``grid=None`` means a square grid."""
        n = codes.shape[1]
        if grid is None:
            side = round(n ** 0.5)
            if side * side != n:
                raise ValueError(f'{n} codes are not a square grid; pass '
                                 'grid=(h, w)')
            grid = (side, side)
        if grid[0] * grid[1] != n:
            raise ValueError(f'{n} codes do not fill a {grid[0]}x{grid[1]} '
                             'grid')
        if n and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(
                f'codes must lie in [0, {self.num_codes}); got '
                f'[{int(codes.min())}, {int(codes.max())}]')
        latents = self.quantize.latents(codes.long(), grid)
        dtype = self.decoder.conv_in.weight.dtype
        return self.decoder(latents.to(dtype)).float().clamp(-1, 1)


def _weights_file(folder):
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob('*.safetensors'))
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"MAGVIT-v2 folder '{folder}' has no weights file: looked for "
        f'{list(WEIGHT_FILES)} or a single *.safetensors'
        + (f' (found several: {[p.name for p in found]})' if found else ''))
