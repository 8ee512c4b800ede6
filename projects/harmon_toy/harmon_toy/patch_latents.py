"""A continuous generation tokenizer for the shape scenes: slot patches as
fixed latent vectors.

Harmon generates continuous latents (KL-16 VAE, 16 channels per token) with
a diffusion head per token. A KL-16 VAE cannot be trained here, and a random
one decodes nothing, so the toy replaces the VAE's encoder and decoder with
a table: each 16 px slot patch of a scene (one of the 19 of
:func:`~projects.janus_toy.janus_toy.shape_patch_codebook`) is a fixed
``latent_channels``-vector, and decoding takes the nearest one. The vectors
are a fixed random linear projection of the patch pixels, standardised per
channel, so that patches that share pixels (a colour, a shape) have nearby
latents, as they would under a real autoencoder, and the latents have unit
scale, as Harmon's scaled KL-16 latents do. The round trip is exact.

A 64 px scene is a 4 x 4 latent grid (16 tokens), the layout of the
:class:`~reca_toolkit.models.encoders.VAETokenizer` this subclasses; the
``AutoencoderKL`` that :class:`~reca_toolkit.models.umm.harmon.HarmonUMM`
always builds is kept (frozen, in the checkpoint's ``kl16`` file) but not
run.
"""
import torch

from projects.janus_toy.janus_toy import PatchLookupTokenizer
from reca_toolkit.models.encoders import VAETokenizer
from reca_toolkit.registry import ENCODERS


@ENCODERS.register_module()
class PatchLatentTokenizer(VAETokenizer):
    """Pixels <-> slot-patch latents ``[B, C, 4, 4]`` <-> 16 tokens.

    Args:
        vae: the adapter's autoencoder, kept as ``vae`` (the part name
            ``frozen=`` and the weight files use) and never run.
        latent_channels: channels of a latent (KL-16: 16).
        seed: seed of the random projection; a checkpoint is tied to it.
        codebook, grid_size: the patch table, as for
            :class:`~projects.janus_toy.janus_toy.PatchLookupTokenizer`.
    """

    def __init__(self, vae, latent_channels=16, seed=0,
                 codebook=dict(type='shape_patch_codebook'), grid_size=4):
        super().__init__(vae, scaling_factor=1.0)
        self.lookup = PatchLookupTokenizer(codebook, grid_size)
        patches = self.lookup.patches.flatten(1)  # [K, 3 * S * S]
        projection = torch.randn(
            patches.shape[1], latent_channels,
            generator=torch.Generator().manual_seed(seed))
        points = patches @ projection
        points = (points - points.mean(0)) / points.std(0)
        # Derived from the seed, so not part of checkpoints.
        self.register_buffer('points', points, persistent=False)

    @property
    def downsample(self):
        return self.lookup.patch_size

    @property
    def latent_channels(self):
        return self.points.shape[1]

    @torch.no_grad()
    def encode(self, pixels, generator=None):
        """``[B, 3, 64, 64]`` in [-1, 1] -> latents ``[B, C, 4, 4]``."""
        codes = self.lookup.encode(pixels)
        g = self.lookup.grid_size
        latents = self.points.to(pixels.device)[codes]  # [B, N, C]
        return latents.unflatten(1, (g, g)).permute(0, 3, 1, 2).contiguous()

    def codes(self, latents):
        """The nearest table entry of each latent: ``[B, N]`` codes."""
        tokens = self.to_tokens(latents.float())
        points = self.points.to(tokens.device)
        distance = (points ** 2).sum(1) - 2 * tokens @ points.T
        return distance.argmin(-1)

    @torch.no_grad()
    def decode(self, latents):
        """Latents ``[B, C, 4, 4]`` -> pixels ``[B, 3, 64, 64]``: each token
        becomes its nearest table entry's patch."""
        return self.lookup.decode(self.codes(latents))
