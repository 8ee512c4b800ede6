"""Masked autoregressive generation over continuous tokens (MAR).

Li et al. (2024), "Autoregressive Image Generation without Vector
Quantization", as Harmon uses it over KL-16 VAE latents: a bidirectional
encoder over a buffer plus the visible tokens, a decoder that puts mask
tokens back at the masked positions, and a per-token diffusion head
(:class:`DiffusionHead`) conditioned on the decoder's output there.

Harmon runs its LLM between encoder and decoder and adds the result as a
residual; here that is the ``middle`` callable the UMM adapter passes to
:meth:`~MaskedAutoregressiveGenerator.loss` and ``sample`` (``None`` for a
plain MAR). Harmon has no class embedding: all buffer slots hold
``fake_latent``. Parameter names are MAR's, so Harmon's ``mar.*`` weights
load with ``strict=True``.
"""
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from reca_toolkit.models.losses import global_mean
from reca_toolkit.registry import GENERATORS

from .diffusion_head import DiffusionHead


def mask_by_order(orders, counts):
    """``[B, N]`` bool: True at the first ``counts[b]`` positions of
    ``orders[b]``. ``argsort`` inverts each order into ranks."""
    return orders.argsort(dim=1) < counts.view(-1, 1)


@dataclass
class MaskingDraws:
    """One training step's random choices, ``B`` rows of ``N`` tokens.

    ``orders`` ``[B, N]``: generation orders; ``ratios`` ``[B]`` (float64):
    mask ratios; ``timesteps`` ``[B, N, M]`` and ``noise`` ``[B, N, M, C]``:
    the diffusion draws for each token's ``M = diffusion_batch_mul`` scores.
    """
    orders: torch.Tensor
    ratios: torch.Tensor
    timesteps: torch.Tensor
    noise: torch.Tensor

    @property
    def num_masked(self):
        """``ceil(N * ratio)`` per row, as MAR rounds."""
        return torch.ceil(self.orders.shape[1] * self.ratios).long().to(
            self.orders.device)

    @property
    def mask(self):
        """``[B, N]`` bool, True where masked: each order's first
        ``num_masked`` positions."""
        return mask_by_order(self.orders, self.num_masked)


@GENERATORS.register_module()
class MaskedAutoregressiveGenerator(nn.Module):
    """MAR's masked-token training loss and its iterative sampler.

    Args:
        encoder_dim, encoder_depth, encoder_heads: the encoder's timm blocks.
        decoder_dim, decoder_depth, decoder_heads: the decoder's.
        head: ``DiffusionHead`` arguments (``width``, ``depth``,
            ``num_sampling_steps``); its token and condition widths are
            ``token_dim`` and ``decoder_dim``.
        token_dim: channels of one latent token (KL-16: 16).
        pos_embed_grid: the token grid the learned positional embeddings
            are stored for (256 px KL-16: 16); other grids interpolate them.
        buffer_size: ``fake_latent`` slots before the image tokens.
        mlp_ratio: the blocks' MLP width over their width.
        mask_ratio_min, mask_ratio_std: the training mask ratio is a normal
            centred at 1 with this std, truncated to [mask_ratio_min, 1].
        mask_ratio_per: ``'sample'``: each sample draws its own ratio, so a
            sample's loss does not depend on its batch or the world size;
            ``'batch'``: one ratio per local batch, the first sample's (MAR
            and Harmon).
        diffusion_batch_mul: diffusion scores per masked token per step.
        num_iter, guidance_scale, cfg_schedule, temperature: sampling
            defaults: steps of the mask schedule, classifier-free guidance
            (1 disables it), ``'constant'`` or ``'linear'`` (MAR's ramp from 1
            to the scale as tokens are revealed), diffusion noise scale.
        attn_dropout, proj_dropout: the blocks' dropout. MAR and Harmon train
            with 0.1; dropout draws from the global RNG, so with it the loss
            is no longer a function of the draws alone.
        grad_checkpointing: recompute blocks in the backward: the encoder's,
            the decoder's and the diffusion head's residual blocks (setting
            the attribute later, as ``BaseUMM.enable_checkpointing`` does,
            switches all three).
    """

    def __init__(self, encoder_dim, encoder_depth, encoder_heads,
                 decoder_dim, decoder_depth, decoder_heads, head,
                 token_dim=16, pos_embed_grid=16, buffer_size=64,
                 mlp_ratio=4.0, mask_ratio_min=0.7, mask_ratio_std=0.25,
                 mask_ratio_per='sample', diffusion_batch_mul=4, num_iter=64,
                 guidance_scale=3.0, cfg_schedule='constant', temperature=1.0,
                 attn_dropout=0.0, proj_dropout=0.0,
                 grad_checkpointing=False):
        super().__init__()
        if mask_ratio_per not in ('sample', 'batch'):
            raise ValueError(f"mask_ratio_per must be 'sample' or 'batch', "
                             f'got {mask_ratio_per!r}')
        self.token_dim = token_dim
        self.encoder_dim = encoder_dim
        self.decoder_dim = decoder_dim
        self.pos_embed_grid = pos_embed_grid
        self.buffer_size = buffer_size
        self.mask_ratio_min = mask_ratio_min
        self.mask_ratio_std = mask_ratio_std
        self.mask_ratio_per = mask_ratio_per
        self.diffusion_batch_mul = diffusion_batch_mul
        self.num_iter = num_iter
        self.guidance_scale = guidance_scale
        self.cfg_schedule = cfg_schedule
        self.temperature = temperature
        self.grad_checkpointing = grad_checkpointing
        positions = pos_embed_grid ** 2

        def blocks(dim, depth, heads):
            return nn.ModuleList(
                Block(dim, heads, mlp_ratio, qkv_bias=True,
                      norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
                      proj_drop=proj_dropout, attn_drop=attn_dropout)
                for _ in range(depth))

        self.fake_latent = nn.Parameter(torch.zeros(1, encoder_dim))
        self.z_proj = nn.Linear(token_dim, encoder_dim)
        self.z_proj_ln = nn.LayerNorm(encoder_dim, eps=1e-6)
        self.encoder_pos_embed_learned = nn.Parameter(
            torch.zeros(1, buffer_size + positions, encoder_dim))
        self.encoder_blocks = blocks(encoder_dim, encoder_depth,
                                     encoder_heads)
        self.encoder_norm = nn.LayerNorm(encoder_dim, eps=1e-6)

        self.decoder_embed = nn.Linear(encoder_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed_learned = nn.Parameter(
            torch.zeros(1, buffer_size + positions, decoder_dim))
        self.decoder_blocks = blocks(decoder_dim, decoder_depth,
                                     decoder_heads)
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.diffusion_pos_embed_learned = nn.Parameter(
            torch.zeros(1, positions, decoder_dim))
        self._init_weights()
        # Built after the initialisation above, which it keeps its own of.
        self.diffloss = DiffusionHead(token_dim, decoder_dim,
                                      grad_checkpointing=grad_checkpointing,
                                      **head)

    @property
    def grad_checkpointing(self):
        return self._grad_checkpointing

    @grad_checkpointing.setter
    def grad_checkpointing(self, value):
        self._grad_checkpointing = value
        # The head keeps its own flag; 'diffloss' is absent while __init__
        # runs.
        if 'diffloss' in self._modules:
            self.diffloss.net.grad_checkpointing = value

    def _init_weights(self):
        for param in (self.fake_latent, self.mask_token,
                      self.encoder_pos_embed_learned,
                      self.decoder_pos_embed_learned,
                      self.diffusion_pos_embed_learned):
            nn.init.normal_(param, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    # ---------------------------------------------------------------- draws

    def draw(self, seeds, num_tokens, device=None):
        """Every random choice of :meth:`loss`, from one CPU generator per
        sample seeded with ``seeds[i]``, drawn in this order: the generation
        order (``randperm(N)``), one float64 uniform for the mask ratio,
        timesteps ``[N, M]`` and noise ``[N, M, C]`` (token-major: every
        token's draws exist whether or not it is masked, so they do not
        depend on the ratio). Each sample draws all four in both
        ``mask_ratio_per`` modes, so orders, timesteps and noise do not
        depend on the mode either."""
        mul, steps = self.diffusion_batch_mul, self.diffloss.diffusion
        rows = []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            rows.append((
                torch.randperm(num_tokens, generator=g),
                torch.rand((), generator=g, dtype=torch.float64),
                torch.randint(steps.num_timesteps, (num_tokens, mul),
                              generator=g),
                torch.randn(num_tokens, mul, self.token_dim, generator=g)))
        orders, uniforms, timesteps, noise = map(torch.stack, zip(*rows))
        if self.mask_ratio_per == 'batch':
            uniforms = uniforms[:1].expand(len(uniforms))
        return MaskingDraws(orders.to(device), self.mask_ratios(uniforms),
                            timesteps.to(device), noise.to(device))

    def mask_ratios(self, uniforms):
        """The truncated normal's inverse CDF at ``uniforms`` in [0, 1)."""
        std = self.mask_ratio_std
        low = torch.special.ndtr(torch.tensor(
            (self.mask_ratio_min - 1) / std, dtype=torch.float64))
        return 1 + std * torch.special.ndtri(low + uniforms * (0.5 - low))

    # ------------------------------------------------- encoder and decoder

    def _pos_embed(self, table, grid):
        """``table`` (a prefix, then ``pos_embed_grid``^2 positions)
        for a ``grid = (h, w)`` of tokens: the grid part bilinearly resized
        (Harmon's rule for 512 px), the prefix as it is."""
        g = self.pos_embed_grid
        if tuple(grid) == (g, g):
            return table
        prefix, image = table.split([table.shape[1] - g * g, g * g], dim=1)
        image = image.unflatten(1, (g, g)).permute(0, 3, 1, 2)
        image = F.interpolate(image, size=tuple(grid), mode='bilinear')
        return torch.cat([prefix, image.flatten(2).transpose(1, 2)], dim=1)

    def _layout(self, mask):
        """Where the encoder's sequence comes from and which of it is real.

        ``keep`` ``[B, S + N]``: the buffer and visible positions. ``valid``
        ``[B, S + V]``: the encoder sequence, ``V`` the most visible tokens
        of any row; a row with fewer is padded at its end, and ``valid`` is
        False there.
        """
        keep = torch.cat([mask.new_ones(len(mask), self.buffer_size,
                                        dtype=torch.bool), ~mask.bool()], 1)
        counts = keep.sum(1)
        valid = (torch.arange(int(counts.max()), device=mask.device)
                 < counts[:, None])
        return keep, valid

    def _blocks(self, blocks, x, valid=None):
        # A key-padding mask only where rows differ in length, so equal rows
        # take the same path as MAR.
        attn_mask = (None if valid is None or bool(valid.all())
                     else valid[:, None, None, :])
        for block in blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, attn_mask, use_reentrant=False)
            else:
                x = block(x, attn_mask)
        return x

    def encode(self, tokens, mask, grid):
        """Encoder states ``[B, S + V, encoder_dim]`` of the ``S =
        buffer_size`` buffer slots (first) and the visible tokens, in
        position order.

        ``tokens`` ``[B, N, C]``; ``mask`` ``[B, N]`` (float or bool, 1 =
        masked); ``grid``: the ``(h, w)`` of the N tokens. MAR drops masked
        positions before the blocks; rows that keep different numbers of
        tokens (per-sample mask ratios) are padded at the end to the longest
        and the padding is hidden from attention, so each row's states equal
        those of the row alone. With ``mask`` all zero this is Harmon's
        understanding encoder.
        """
        x = self.z_proj(tokens.to(self.z_proj.weight.dtype))
        buffer = self.fake_latent.to(x.dtype).expand(
            len(x), self.buffer_size, -1)
        x = torch.cat([buffer, x], dim=1)
        x = self.z_proj_ln(
            x + self._pos_embed(self.encoder_pos_embed_learned, grid))
        keep, valid = self._layout(mask)
        packed = x.new_zeros(*valid.shape, x.shape[-1])
        packed[valid] = x[keep]
        return self.encoder_norm(self._blocks(self.encoder_blocks, packed,
                                              valid))

    def decode(self, x, mask, grid):
        """Decoder states ``[B, N, decoder_dim]``, the diffusion head's
        conditions: ``x`` (encoder layout) back at its positions among mask
        tokens, through the decoder, buffer dropped."""
        keep, valid = self._layout(mask)
        x = self.decoder_embed(x)
        full = self.mask_token.to(x.dtype).expand(
            *keep.shape, -1).clone()
        full[keep] = x[valid]
        x = full + self._pos_embed(self.decoder_pos_embed_learned, grid)
        x = self.decoder_norm(self._blocks(self.decoder_blocks, x))
        return (x[:, self.buffer_size:]
                + self._pos_embed(self.diffusion_pos_embed_learned, grid))

    def _run(self, tokens, mask, grid, middle):
        x = self.encode(tokens, mask, grid)
        if middle is not None:
            x = middle(x, self._layout(mask)[1])
        return self.decode(x, mask, grid)

    # ------------------------------------------------------ loss and sample

    def token_losses(self, tokens, grid, middle, draws):
        """The diffusion losses of the masked tokens, ``[K, M]``: the ``K``
        masked positions in row-major order, each scored ``M`` times (the
        draws' last timestep dimension; training draws
        ``diffusion_batch_mul``). Arguments as for :meth:`loss`; probes
        read per-token losses under draws of their own.
        """
        mask = draws.mask
        z = self._run(tokens, mask, grid, middle)
        mul = draws.timesteps.shape[-1]
        cond = z[mask].unsqueeze(1).expand(-1, mul, -1)
        target = tokens[mask].unsqueeze(1).expand(-1, mul, -1)
        return self.diffloss.loss(
            target.flatten(0, 1).float(), cond.flatten(0, 1),
            draws.timesteps[mask].flatten(),
            draws.noise[mask].flatten(0, 1)).view(-1, mul)

    def loss(self, tokens, grid, middle, draws):
        """MAR's loss: the diffusion loss of the masked tokens only.

        ``tokens`` ``[B, N, C]`` on a ``grid = (h, w)``; ``draws`` from
        :meth:`draw`. ``middle(x, valid)`` maps encoder states to encoder
        states (Harmon: its LLM plus the residual); ``valid`` (``[B, L]``
        bool) marks the real positions of the padded encoder sequence; the
        rest is padding, which ``middle`` must hide from attention and give
        no position (position ids from the mask's cumsum, as for padded
        prompts) for a row's loss not to depend on its batch. ``None`` skips
        it. The mean is over the global batch's scores, so DDP equals one
        process.
        """
        losses = self.token_losses(tokens, grid, middle, draws)
        return dict(loss=global_mean(losses, losses.numel()))

    @torch.no_grad()
    def sample(self, num_rows, grid, middle, generator, num_iter=None,
               guidance_scale=None, cfg_schedule=None, temperature=None,
               num_sampling_steps=None):
        """MAR's iterative sampler: ``[B, N, C]`` tokens.

        Random orders, then ``num_iter`` steps each revealing the positions
        that leave the mask on a cosine schedule (MaskGIT's), every step
        re-encoding all tokens so far. With guidance the rows are doubled
        (``middle`` sees ``2B``: first the conditional, then the
        unconditional rows) and the head combines the two halves. All rows
        mask the same number of tokens, so ``valid`` is all True here.
        ``generator`` (any device) draws the orders, then every head call's
        noise.
        """
        num_iter = num_iter or self.num_iter
        scale = (self.guidance_scale if guidance_scale is None
                 else guidance_scale)
        schedule = cfg_schedule or self.cfg_schedule
        if schedule not in ('constant', 'linear'):
            raise ValueError(f"cfg_schedule must be 'constant' or 'linear', "
                             f'got {schedule!r}')
        temperature = (self.temperature if temperature is None
                       else temperature)
        guided = scale != 1
        device = self.fake_latent.device
        n = grid[0] * grid[1]
        orders = torch.rand(num_rows, n, generator=generator,
                            device=generator.device).argsort(dim=1).to(device)
        tokens = torch.zeros(num_rows, n, self.token_dim, device=device)
        mask = torch.ones(num_rows, n, dtype=torch.bool, device=device)

        def double(t):
            return torch.cat([t, t]) if guided else t

        for step in range(num_iter):
            z = self._run(double(tokens), double(mask), grid, middle)
            remaining = int(mask[0].sum())
            mask_len = math.floor(n * math.cos(math.pi / 2 * (step + 1)
                                               / num_iter))
            mask_len = max(1, min(remaining - 1, mask_len))
            next_mask = mask_by_order(
                orders, torch.full((num_rows,), mask_len, device=device))
            to_predict = mask if step == num_iter - 1 else mask & ~next_mask
            step_scale = scale
            if schedule == 'linear':
                step_scale = 1 + (scale - 1) * (n - mask_len) / n
            tokens[to_predict] = self.diffloss.sample(
                z[double(to_predict)], temperature, step_scale,
                generator=generator,
                num_sampling_steps=num_sampling_steps).to(tokens.dtype)
            mask = next_mask
        return tokens
