"""The Gaussian diffusion behind MAR's per-token diffusion loss.

DDPM as improved-diffusion (Nichol & Dhariwal 2021) and DiT define it and
MAR uses it: the model predicts the noise and, in C more channels, where its
variance lies between the posterior's and beta; training adds the variational
bound (in bits) to the noise MSE; sampling is ancestral over an evenly
respaced subset of the steps. Tables are float64 and are taken to float32 at
the indexed timesteps, as upstream, so the same weights give the same numbers.

Nothing here draws from the global RNG: the loss takes its timesteps and
noise from the caller, and the sampler takes a ``torch.Generator``.
"""
import math

import torch


def beta_schedule(name, num_timesteps):
    """``'cosine'``: Nichol & Dhariwal's alpha-bar, each beta capped at 0.999
    so that the last step is not a division by a zero alpha-bar;
    ``'linear'``: Ho et al.'s, scaled to ``num_timesteps``."""
    if name == 'cosine':
        t = (torch.arange(num_timesteps + 1, dtype=torch.float64)
             / num_timesteps)
        alpha_bar = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    if name == 'linear':
        scale = 1000 / num_timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps,
                              dtype=torch.float64)
    raise ValueError(f"noise_schedule must be 'cosine' or 'linear', "
                     f'got {name!r}')


def spaced_timesteps(num_timesteps, respacing):
    """The steps a respaced process keeps, improved-diffusion's rule.

    ``respacing``: a count (``100`` or ``'100'``), or comma-separated counts
    (``'10,20'``) for equal sections of the process. Each section keeps its
    count of evenly strided steps, its first and last included; the stride
    is accumulated as a float and rounded, as upstream, so MAR's 100 steps
    are the same ones.
    """
    counts = [int(c) for c in str(respacing).split(',')]
    size, extra = divmod(num_timesteps, len(counts))
    steps, start = [], 0
    for i, count in enumerate(counts):
        length = size + (i < extra)
        if not 1 <= count <= length:
            raise ValueError(f'cannot take {count} steps from {length}')
        stride = (length - 1) / (count - 1) if count > 1 else 1
        position = 0.0
        for _ in range(count):
            steps.append(start + round(position))
            position += stride
        start += length
    return steps


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_normal_cdf(x):
    # The tanh approximation upstream uses; kept for parity.
    return 0.5 * (1.0 + torch.tanh(
        math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """Log-probability (nats) of the 1/127.5-wide bin around ``x`` in
    [-1, 1], the open-ended bins at the edges, under N(means, e^2log_scales).

    This is improved-diffusion's decoder term for 8-bit images; MAR keeps it
    for its latents, so it is kept here.
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = _approx_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min,
                                   log_delta))


def _mean_flat(x):
    return x.flatten(1).mean(1)


class GaussianDiffusion:
    """Epsilon-predicting DDPM with learned-range variance.

    Args:
        num_timesteps: steps of the underlying process.
        noise_schedule: ``'cosine'`` (MAR) or ``'linear'``.
        timestep_respacing: ``None`` for every step, else the count(s) of
            :func:`spaced_timesteps`. Betas are then recomputed from the kept
            alpha-bars, and the model is called with the kept steps' original
            indices (``timestep_map``), so one network serves any spacing.
    """

    def __init__(self, num_timesteps=1000, noise_schedule='cosine',
                 timestep_respacing=None):
        base = torch.cumprod(1 - beta_schedule(noise_schedule, num_timesteps),
                             0)
        steps = (list(range(num_timesteps)) if timestep_respacing in
                 (None, '') else spaced_timesteps(num_timesteps,
                                                  timestep_respacing))
        if len(steps) < 2:
            raise ValueError('a process needs at least 2 steps: the '
                             'posterior variance at step 0 is 0 and is '
                             'clipped to that of step 1')
        kept = base[steps]
        betas = 1 - kept / torch.cat([kept.new_ones(1), kept[:-1]])
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        previous = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])

        self.num_timesteps = len(steps)
        self.timestep_map = torch.tensor(steps)
        self.betas = betas
        self.log_betas = torch.log(betas)
        self.alphas_cumprod = alphas_cumprod
        self.sqrt_alphas_cumprod = alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1 - alphas_cumprod).sqrt()
        self.sqrt_recip_alphas_cumprod = (1 / alphas_cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1 / alphas_cumprod - 1).sqrt()
        self.posterior_variance = betas * (1 - previous) / (1 - alphas_cumprod)
        self.posterior_log_variance_clipped = torch.log(torch.cat(
            [self.posterior_variance[1:2], self.posterior_variance[1:]]))
        self.posterior_mean_coef1 = (betas * previous.sqrt()
                                     / (1 - alphas_cumprod))
        self.posterior_mean_coef2 = ((1 - previous) * (1 - betas).sqrt()
                                     / (1 - alphas_cumprod))
        self._on_device = {}

    def _table(self, name, device):
        key = (name, torch.device(device))
        if key not in self._on_device:
            self._on_device[key] = getattr(self, name).to(device)
        return self._on_device[key]

    def _at(self, name, t, like):
        """``name[t]`` in float32, shaped to broadcast against ``like``."""
        values = self._table(name, t.device)[t].float()
        return values.view(-1, *[1] * (like.dim() - 1))

    def model_timesteps(self, t):
        """The original-process indices the network was trained on."""
        return self._table('timestep_map', t.device)[t]

    def q_sample(self, x_start, t, noise):
        """x_t ~ q(x_t | x_0) for the given noise."""
        return (self._at('sqrt_alphas_cumprod', t, x_start) * x_start
                + self._at('sqrt_one_minus_alphas_cumprod', t, x_start)
                * noise)

    def q_posterior(self, x_start, x_t, t):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = (self._at('posterior_mean_coef1', t, x_t) * x_start
                + self._at('posterior_mean_coef2', t, x_t) * x_t)
        return (mean, self._at('posterior_variance', t, x_t),
                self._at('posterior_log_variance_clipped', t, x_t))

    def p_mean_variance(self, model_output, x_t, t):
        """Mean, log-variance and predicted x_0 of p(x_{t-1} | x_t).

        ``model_output``: ``[eps, v]`` along dim 1; ``v`` in [-1, 1]
        interpolates the log-variance from the posterior's (-1) to beta's (1).
        """
        eps, v = model_output.split(x_t.shape[1], dim=1)
        frac = (v + 1) / 2
        log_variance = (frac * self._at('log_betas', t, x_t) + (1 - frac)
                        * self._at('posterior_log_variance_clipped', t, x_t))
        pred_x_start = (self._at('sqrt_recip_alphas_cumprod', t, x_t) * x_t
                        - self._at('sqrt_recipm1_alphas_cumprod', t, x_t)
                        * eps)
        mean = self.q_posterior(pred_x_start, x_t, t)[0]
        return mean, log_variance, pred_x_start

    def vlb_terms(self, model_output, x_start, x_t, t):
        """The bound's term at t, in bits per dimension: the decoder NLL at
        t = 0, else KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))."""
        true_mean, _, true_log_variance = self.q_posterior(x_start, x_t, t)
        mean, log_variance, _ = self.p_mean_variance(model_output, x_t, t)
        kl = _mean_flat(normal_kl(true_mean, true_log_variance, mean,
                                  log_variance)) / math.log(2.0)
        nll = -_mean_flat(discretized_gaussian_log_likelihood(
            x_start, mean, 0.5 * log_variance)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, model_fn, x_start, t, noise):
        """Per-row ``loss = mse + vb``, with ``mse`` and ``vb`` as well.

        ``model_fn(x_t, model_timesteps)`` returns ``[eps, v]``. The bound
        sees the predicted noise detached, so it trains only the variance and
        the MSE alone trains the mean, as in improved-diffusion.
        """
        x_t = self.q_sample(x_start, t, noise)
        output = model_fn(x_t, self.model_timesteps(t))
        eps, v = output.split(x_start.shape[1], dim=1)
        mse = _mean_flat((noise - eps) ** 2)
        vb = self.vlb_terms(torch.cat([eps.detach(), v], dim=1), x_start,
                            x_t, t)
        return dict(loss=mse + vb, mse=mse, vb=vb)

    @torch.no_grad()
    def p_sample_loop(self, model_fn, shape, *, generator, noise=None,
                      temperature=1.0):
        """Ancestral sampling from x_T = ``noise`` (drawn from ``generator``,
        on its device, when not given) to x_0. ``temperature`` scales each
        step's noise, as MAR does; 0 follows the means."""
        def randn():
            return torch.randn(shape, generator=generator,
                               device=generator.device)

        x = randn() if noise is None else noise
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((shape[0],), i, dtype=torch.long, device=x.device)
            output = model_fn(x, self.model_timesteps(t))
            mean, log_variance, _ = self.p_mean_variance(output, x, t)
            x = mean
            if i > 0:
                x = x + (torch.exp(0.5 * log_variance) * temperature
                         * randn().to(x.device))
        return x
