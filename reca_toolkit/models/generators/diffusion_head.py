"""MAR's diffusion head: a small denoiser per token.

Li et al. (2024) model each continuous token's distribution, given the
transformer's output ``z`` at its position, with a diffusion process over the
token alone: an MLP whose residual blocks are modulated (AdaLN) by the sum of
a timestep embedding and an embedding of ``z``. Module names are MAR's
(``diffloss.net.*``) so its and Harmon's weights load as they are.
"""
import functools
import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .gaussian_diffusion import GaussianDiffusion


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal features of (possibly fractional) timesteps: ``dim / 2``
    cosines then as many sines, frequencies from 1 to 1 / max_period."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(
        half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):

    def __init__(self, width, frequency_dim=256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, width), nn.SiLU(),
                                 nn.Linear(width, width))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.frequency_dim).to(
            self.mlp[0].weight.dtype))


class ResBlock(nn.Module):
    """x + gate * MLP(modulated LayerNorm(x)); shift, scale and gate come
    from the conditioning ``y``."""

    def __init__(self, width):
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(),
                                              nn.Linear(width, 3 * width))

    def forward(self, x, y):
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.in_ln(x), shift, scale))


class FinalLayer(nn.Module):

    def __init__(self, width, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False,
                                       eps=1e-6)
        self.linear = nn.Linear(width, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(),
                                              nn.Linear(width, 2 * width))

    def forward(self, x, y):
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SimpleMLPAdaLN(nn.Module):
    """MAR's denoiser: ``(x_t [N, C], t [N], c [N, D]) -> [N, out]``.

    Initialised as MAR (after DiT): the modulations and the output layer
    start at zero, so every block starts as the identity and the first
    prediction is zero noise with the midpoint variance.
    """

    def __init__(self, in_channels, width, out_channels, cond_dim, depth,
                 grad_checkpointing=False):
        super().__init__()
        self.grad_checkpointing = grad_checkpointing
        self.time_embed = TimestepEmbedder(width)
        self.cond_embed = nn.Linear(cond_dim, width)
        self.input_proj = nn.Linear(in_channels, width)
        self.res_blocks = nn.ModuleList(ResBlock(width) for _ in range(depth))
        self.final_layer = FinalLayer(width, out_channels)
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        zeroed = [block.adaLN_modulation[-1] for block in self.res_blocks]
        zeroed += [self.final_layer.adaLN_modulation[-1],
                   self.final_layer.linear]
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, t, c):
        x = self.input_proj(x.to(self.input_proj.weight.dtype))
        y = self.time_embed(t) + self.cond_embed(c)
        for block in self.res_blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, y, use_reentrant=False)
            else:
                x = block(x, y)
        return self.final_layer(x, y)


@functools.lru_cache(maxsize=None)
def _sampling_diffusion(steps):
    return GaussianDiffusion(timestep_respacing=steps)


class DiffusionHead(nn.Module):
    """MAR's DiffLoss: the denoiser, its training loss and its sampler.

    Args:
        token_dim: channels of one token (C).
        cond_dim: channels of the transformer output that conditions it (D).
        width, depth: the MLP's width and number of residual blocks.
        num_sampling_steps: respaced steps of the 1000-step cosine process
            used for sampling; training uses all 1000.
        grad_checkpointing: recompute the residual blocks in the backward.
    """

    def __init__(self, token_dim, cond_dim, width, depth,
                 num_sampling_steps=100, grad_checkpointing=False):
        super().__init__()
        self.token_dim = token_dim
        self.num_sampling_steps = num_sampling_steps
        self.net = SimpleMLPAdaLN(token_dim, width, 2 * token_dim, cond_dim,
                                  depth, grad_checkpointing)
        self.diffusion = GaussianDiffusion()

    def loss(self, target, cond, timesteps, noise):
        """Per-token loss ``[N]`` (noise MSE + bound); the caller reduces it.

        ``timesteps`` ``[N]`` in [0, 1000) and ``noise`` ``[N, C]`` are the
        caller's seeded draws.
        """
        return self.diffusion.training_losses(
            lambda x, t: self.net(x, t, cond), target, timesteps,
            noise)['loss']

    @torch.no_grad()
    def sample(self, cond, temperature=1.0, guidance_scale=1.0, *,
               generator, noise=None, num_sampling_steps=None):
        """One token per conditional row of ``cond``: ``[N, C]`` float32.

        With ``guidance_scale != 1`` the first half of ``cond``'s rows are
        conditional and the second half their unconditional twins (MAR's
        layout). Both halves denoise the same ``x_t``, the predicted noise is
        ``uncond + s * (cond - uncond)``, the variance channels are the
        conditional rows' own, and only the conditional half is returned.
        ``noise`` (x_T, ``[rows, C]``) and every step's noise are drawn from
        ``generator`` unless given.
        """
        guided = guidance_scale != 1
        rows = len(cond) // 2 if guided else len(cond)
        if noise is None:
            noise = torch.randn(rows, self.token_dim, generator=generator,
                                device=generator.device)
        noise = noise.to(cond.device, torch.float32)

        def model_fn(x, t):
            if not guided:
                return self.net(x, t, cond)
            output = self.net(torch.cat([x, x]), torch.cat([t, t]), cond)
            eps, v = output.split(self.token_dim, dim=1)
            cond_eps, uncond_eps = eps.chunk(2)
            guided_eps = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
            return torch.cat([guided_eps, v[:rows]], dim=1)

        diffusion = _sampling_diffusion(
            num_sampling_steps or self.num_sampling_steps)
        return diffusion.p_sample_loop(model_fn, noise.shape,
                                       generator=generator, noise=noise,
                                       temperature=temperature)
