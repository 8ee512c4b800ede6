"""Continuous generation tokenizer over a diffusers autoencoder.

Harmon and MAR (KL-16), BAGEL (the FLUX VAE) and OpenUni (DC-AE) generate
continuous latents rather than VQ codes. One tokenizer serves them all: it
scales the autoencoder's latents the way each model was trained on them and
cuts them into the token sequence the model's generator reads. The adapter
builds the autoencoder (:func:`build_autoencoder_kl` for the KL families)
and hands it over.
"""
from pathlib import Path

import torch
from torch import nn

from reca_toolkit.registry import ENCODERS

# Order of the values inside one token of a p x p latent patch.
# 'cpq': channel-major, MAR / Harmon (``'nchpwq->nhwcpq'``).
# 'pqc': position-major, BAGEL (``'chpwq->hwpqc'``).
PATCH_LAYOUTS = ('cpq', 'pqc')


@ENCODERS.register_module()
class VAETokenizer(nn.Module):
    """Pixels <-> scaled autoencoder latents <-> raster-order tokens.

    Args:
        vae: a built diffusers autoencoder (``AutoencoderKL``, or
            ``AutoencoderDC`` whose ``encode`` has no posterior).
        scaling_factor, shift_factor: latents are ``(z - shift) * scale``.
            ``None`` takes ``vae.config``'s value (shift 0 where it has
            none). Harmon: 0.2325 and 0; FLUX: 0.3611 and 0.1159.
        sample_posterior: draw ``z`` from the KL posterior (then every
            ``encode`` needs a ``torch.Generator``) instead of taking its
            mode. The global RNG is never used: it would make targets depend
            on whatever else consumed random numbers before.
        patch_size: latent patch side per token; BAGEL uses 2.
        patch_layout: 'cpq' (MAR / Harmon) or 'pqc' (BAGEL), see
            ``PATCH_LAYOUTS``; it only matters for ``patch_size > 1``, and
            a generator trained on one layout cannot read the other.
    """

    def __init__(self, vae, scaling_factor=None, shift_factor=None,
                 sample_posterior=False, patch_size=1, patch_layout='cpq'):
        super().__init__()
        if patch_layout not in PATCH_LAYOUTS:
            raise ValueError(f"patch_layout='{patch_layout}' is not one of "
                             f'{PATCH_LAYOUTS}')
        if patch_size < 1:
            raise ValueError(f'patch_size must be >= 1, got {patch_size}')
        self.vae = vae
        config = getattr(vae, 'config', {})
        if scaling_factor is None:
            scaling_factor = _config_value(config, 'scaling_factor')
        if scaling_factor is None:
            raise ValueError(f'{type(vae).__name__}.config has no '
                             'scaling_factor; pass scaling_factor=')
        if shift_factor is None:
            shift_factor = _config_value(config, 'shift_factor')
        self.scaling_factor = float(scaling_factor)
        self.shift_factor = float(shift_factor or 0.0)
        self.sample_posterior = sample_posterior
        self.patch_size = patch_size
        self.patch_layout = patch_layout

    @property
    def downsample(self):
        """Pixels per latent side: each encoder level but the last halves."""
        config = self.vae.config
        for key in ('block_out_channels', 'encoder_block_out_channels'):
            channels = _config_value(config, key)
            if channels is not None:
                return 2 ** (len(channels) - 1)
        raise ValueError(f'cannot tell the downsampling of '
                         f'{type(self.vae).__name__} from its config')

    @property
    def latent_channels(self):
        return _config_value(self.vae.config, 'latent_channels')

    @property
    def token_dim(self):
        return self.latent_channels * self.patch_size ** 2

    def grid(self, image_size):
        """``(h, w)`` in tokens for an image of ``image_size`` (int or
        ``(height, width)``) pixels."""
        height, width = ((image_size, image_size)
                         if isinstance(image_size, int) else image_size)
        step = self.downsample * self.patch_size
        if height % step or width % step:
            raise ValueError(
                f'image size {height}x{width} is not a multiple of '
                f'{step} px (downsample {self.downsample} x patch '
                f'{self.patch_size})')
        return height // step, width // step

    @property
    def dtype(self):
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def encode(self, pixels, generator=None):
        """Pixels in [-1, 1], ``[B, 3, H, W]`` -> float32 scaled latents
        ``[B, C, H / downsample, W / downsample]``."""
        output = self.vae.encode(pixels.to(self.dtype))
        posterior = getattr(output, 'latent_dist', None)
        if posterior is None:
            # AutoencoderDC is deterministic: no posterior to sample.
            z = output.latent
        elif self.sample_posterior:
            if generator is None:
                raise ValueError(
                    'VAETokenizer(sample_posterior=True).encode needs '
                    'generator= (a torch.Generator); it never draws from '
                    'the global RNG')
            z = posterior.sample(generator=generator)
        else:
            z = posterior.mode()
        return (z.float() - self.shift_factor) * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents):
        """Scaled latents ``[B, C, h, w]`` -> float32 pixels in [-1, 1]."""
        z = latents.float() / self.scaling_factor + self.shift_factor
        pixels = self.vae.decode(z.to(self.dtype)).sample
        return pixels.float().clamp(-1, 1)

    def to_tokens(self, latents):
        """``[B, C, h, w]`` -> ``[B, (h / p) * (w / p), C * p * p]``,
        row by row."""
        b, c, h, w = latents.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f'latent grid {h}x{w} is not a multiple of '
                             f'patch_size={p}')
        x = latents.reshape(b, c, h // p, p, w // p, p)
        order = ('b h w c p q' if self.patch_layout == 'cpq'
                 else 'b h w p q c')
        x = x.permute(*_axes('b c h p w q', order))
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def from_tokens(self, tokens, grid):
        """Inverse of :meth:`to_tokens`; ``grid`` is ``(h, w)`` in tokens,
        as :meth:`grid` gives it."""
        gh, gw = grid
        b, n, d = tokens.shape
        p = self.patch_size
        if n != gh * gw or d % (p * p):
            raise ValueError(f'{n} tokens of {d} values do not fill a '
                             f'{gh}x{gw} grid of {p}x{p} patches')
        c = d // (p * p)
        order = ('b h w c p q' if self.patch_layout == 'cpq'
                 else 'b h w p q c')
        sizes = dict(b=b, h=gh, w=gw, c=c, p=p, q=p)
        x = tokens.reshape(*(sizes[a] for a in order.split()))
        x = x.permute(*_axes(order, 'b c h p w q'))
        return x.reshape(b, c, gh * p, gw * p)


def _axes(source, target):
    source = source.split()
    return [source.index(a) for a in target.split()]


def _config_value(config, key):
    if isinstance(config, dict):
        return config.get(key)
    return getattr(config, key, None)


def build_autoencoder_kl(config=None, pretrained=None):
    """A ``diffusers.AutoencoderKL``, from local files only.

    Args:
        config: ``AutoencoderKL`` keyword arguments (e.g.
            ``harmon_weights.KL16_CONFIG``). Alone: random initialisation.
        pretrained: a local diffusers folder (``config.json`` +
            ``diffusion_pytorch_model.safetensors``; ``config`` must then be
            None), or one ``.safetensors`` file of diffusers-named weights,
            which needs ``config``. Other formats are converted first
            (``tools/model_converters/harmon_to_safetensors.py`` for
            ``kl16.ckpt``): pickles are never loaded here.
    """
    from diffusers import AutoencoderKL
    if pretrained is None:
        if config is None:
            raise ValueError('build_autoencoder_kl needs config= (random '
                             'initialisation) or pretrained= (local files)')
        return AutoencoderKL(**config)
    path = Path(pretrained)
    if path.is_dir():
        if config is not None:
            raise ValueError(f"pretrained='{path}' is a diffusers folder with "
                             'its own config.json; leave config=None')
        if not (path / 'config.json').is_file():
            raise FileNotFoundError(
                f"AutoencoderKL folder '{path}' has no config.json")
        return AutoencoderKL.from_pretrained(
            path, local_files_only=True, use_safetensors=True)
    if not path.is_file():
        raise FileNotFoundError(f"AutoencoderKL weights '{path}' do not exist")
    if path.suffix != '.safetensors':
        raise ValueError(
            f"'{path}' is not a .safetensors file; reca_toolkit loads "
            'autoencoder weights from safetensors only (convert kl16.ckpt '
            'with tools/model_converters/harmon_to_safetensors.py)')
    if config is None:
        raise ValueError(f"a single weights file ('{path}') needs config=, "
                         'the AutoencoderKL keyword arguments')
    from safetensors.torch import load_file
    vae = AutoencoderKL(**config)
    state = load_file(path)
    result = vae.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"'{path}' does not match the AutoencoderKL config: missing "
            f'{sorted(result.missing_keys)[:10]}, unexpected '
            f'{sorted(result.unexpected_keys)[:10]}')
    return vae
