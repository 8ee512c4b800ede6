"""Rectified-flow (flow-matching) generation on latents, with its sampler.

Shared by the diffusion UMMs: OpenUni (SANA over DC-AE latents, uniform
timesteps) and BAGEL (its generation expert over FLUX latents, logit-normal
timesteps with a shift). The denoiser -- whatever network predicts the
velocity from noisy latents, timesteps and the prompt -- belongs to the
adapter and is passed in as a callable ``denoiser(x_t, timesteps)``.

Conventions (those of diffusers' flow-matching schedulers):

* ``x_t = (1 - t) * x0 + t * noise``, ``t`` in [0, 1]; ``t = 1`` is noise;
* the network predicts the velocity ``noise - x0``; the loss is its MSE,
  the mean over every latent value of the global batch;
* the denoiser receives ``timesteps = t * num_train_timesteps`` (SANA and
  the diffusers pipelines embed timesteps on [0, 1000]).

Every random choice of :meth:`FlowMatchingGenerator.loss` (each sample's
``t`` and noise) comes from that sample's seed (:meth:`draw`), never from
the global RNG, so a sample's loss does not depend on its batch, the world
size or a resume.
"""
from dataclasses import dataclass

import torch
from torch import nn

from reca_toolkit.models.losses import global_mean
from reca_toolkit.registry import GENERATORS

TIMESTEP_SAMPLINGS = ('uniform', 'logit_normal')
SCHEDULERS = ('dpm_solver', 'euler')
SIGMA_GRIDS = ('scheduler', 'uniform')
CFG_RENORMS = (None, 'global', 'sample', 'channel', 'text_channel')


@dataclass
class FlowDraws:
    """Per-sample random choices of one flow-matching loss.

    Attributes:
        t: ``[B]`` float32 times in [0, 1] (1 = pure noise).
        noise: ``[B, *shape]`` float32 standard normal noise.
    """
    t: torch.Tensor
    noise: torch.Tensor


def shift_times(t, shift):
    """The timestep shift of SD3 / SANA / BAGEL:
    ``shift * t / (1 + (shift - 1) * t)``; 1 leaves ``t`` unchanged."""
    if shift == 1:
        return t
    return shift * t / (1 + (shift - 1) * t)


def interpolate(x0, noise, t):
    """``x_t = (1 - t) x0 + t noise``, ``t`` per sample (``[B]``)."""
    t = t.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return (1 - t) * x0 + t * noise


def velocity_target(x0, noise):
    """What the network predicts: ``noise - x0`` (d x_t / d t)."""
    return noise - x0


def guide(cond, uncond, scale):
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)``."""
    return uncond + scale * (cond - uncond)


def renorm(guided, cond, mode, minimum=0.0):
    """The guided prediction scaled down to at most the conditional one's
    norm, by a factor clamped to ``[minimum, 1]`` (BAGEL's ``cfg_renorm``):
    'global' takes one norm over every value of the batch, as BAGEL's
    ``generate_image`` does over its packed sequence (the images sampled
    together -- upstream's GenEval script packs 4 of a prompt -- share one
    factor); 'sample' one per sample (each image independent of what it
    was sampled with); 'channel' one per position over the last
    dimension."""
    if mode == 'global':
        norm = torch.linalg.vector_norm
    elif mode == 'sample':
        norm = lambda t: t.flatten(1).norm(dim=1).reshape(  # noqa: E731
            -1, *([1] * (cond.ndim - 1)))
    else:
        norm = lambda t: t.norm(dim=-1, keepdim=True)  # noqa: E731
    scale = (norm(cond) / (norm(guided) + 1e-8)).clamp(min=minimum, max=1.0)
    return guided * scale


@GENERATORS.register_module()
class FlowMatchingGenerator(nn.Module):
    """Flow-matching loss and sampler over an adapter-supplied denoiser.

    It has no parameters: the denoiser is the adapter's (SANA, a BAGEL
    expert), so freezing, checkpointing and export stay with the adapter.

    Args:
        timestep_sampling: 'uniform' (OpenUni: ``t ~ U``, weighting
            'none') or 'logit_normal' (BAGEL: ``t = sigmoid(N(mean, std))``).
        logit_mean, logit_std: the logit-normal's parameters.
        shift: timestep shift applied to the drawn ``t``
            (:func:`shift_times`); BAGEL trains with 1.0.
        num_train_timesteps: the timestep scale the denoiser embeds, and,
            with ``discrete=True``, the grid ``t`` is drawn on.
        discrete: 'uniform' only: draw ``t`` on the ``num_train_timesteps``
            grid ``{1/N, ..., 1}`` (diffusers' FlowMatchEulerDiscreteScheduler
            training sigmas: OpenUni indexes them uniformly); False draws
            continuous times. Logit-normal times are always continuous.
        scheduler: the sampler: 'dpm_solver' (diffusers'
            ``DPMSolverMultistepScheduler`` in its flow-matching mode,
            second-order DPM-Solver++, as SANA's pipeline samples) or
            'euler' (``FlowMatchEulerDiscreteScheduler``).
        sampling_shift: the sampler's flow shift (``flow_shift`` /
            ``shift`` of the diffusers scheduler).
        scheduler_config: extra arguments for the diffusers scheduler (a
            SANA folder's ``scheduler/scheduler_config.json``).
        num_inference_steps: sampling steps (OpenUni: 20).
        guidance_scale: classifier-free guidance scale (OpenUni: 4.5), or
            a sequence of scales for serial guidance (:meth:`sample`).
        sigma_grid: 'euler' only: the scheduler's own noise levels
            ('scheduler'), or ``num_inference_steps`` equal steps from
            ``t = 1`` to 0 before the shift ('uniform', BAGEL's
            ``linspace(1, 0, num_timesteps)``, which takes
            ``num_timesteps - 1`` steps).
        cfg_interval: guidance applies only at steps whose ``t`` lies in
            ``(low, high]``; elsewhere the conditional prediction alone.
        cfg_renorm: None, or :func:`renorm`'s 'global' / 'sample' /
            'channel' rescaling of the guided prediction, with
            ``cfg_renorm_min`` its lowest factor (BAGEL: 'global', 0, one
            factor for the images of one call as upstream; 'sample' is the
            per-image fix); 'text_channel' rescales per position after the
            first guidance branch only (BAGEL's editing).
        cfg_renorm_group: with 'global', the samples of a call share a
            factor in consecutive groups of this many (upstream's GenEval
            script samples a prompt's images 4 per packed call); None: all.
    """

    def __init__(self,
                 timestep_sampling='uniform',
                 logit_mean=0.0,
                 logit_std=1.0,
                 shift=1.0,
                 num_train_timesteps=1000,
                 discrete=True,
                 scheduler='dpm_solver',
                 sampling_shift=1.0,
                 scheduler_config=None,
                 num_inference_steps=20,
                 guidance_scale=4.5,
                 sigma_grid='scheduler',
                 cfg_interval=(0.0, 1.0),
                 cfg_renorm=None,
                 cfg_renorm_min=0.0,
                 cfg_renorm_group=None):
        super().__init__()
        if timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(f"timestep_sampling='{timestep_sampling}' is not "
                             f'one of {TIMESTEP_SAMPLINGS}')
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler='{scheduler}' is not one of "
                             f'{SCHEDULERS}')
        if shift <= 0 or sampling_shift <= 0:
            raise ValueError('shift and sampling_shift must be > 0')
        if sigma_grid not in SIGMA_GRIDS:
            raise ValueError(f"sigma_grid='{sigma_grid}' is not one of "
                             f'{SIGMA_GRIDS}')
        if sigma_grid == 'uniform' and scheduler != 'euler':
            raise ValueError("sigma_grid='uniform' needs scheduler='euler'")
        if cfg_renorm not in CFG_RENORMS:
            raise ValueError(f"cfg_renorm='{cfg_renorm}' is not one of "
                             f'{CFG_RENORMS}')
        self.sigma_grid = sigma_grid
        self.cfg_interval = tuple(float(v) for v in cfg_interval)
        self.cfg_renorm, self.cfg_renorm_min = cfg_renorm, float(
            cfg_renorm_min)
        self.cfg_renorm_group = cfg_renorm_group
        self.timestep_sampling = timestep_sampling
        self.logit_mean, self.logit_std = float(logit_mean), float(logit_std)
        self.shift = float(shift)
        self.num_train_timesteps = int(num_train_timesteps)
        self.discrete = bool(discrete)
        self.scheduler = scheduler
        self.sampling_shift = float(sampling_shift)
        self._scheduler_config = dict(scheduler_config or {})
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = tuple(float(g) for g in guidance_scale) \
            if isinstance(guidance_scale, (list, tuple)) \
            else float(guidance_scale)

    # training ------------------------------------------------------------
    def times(self, values):
        """``t`` from each sample's base draw: a float64 uniform on [0, 1)
        ('uniform') or a float64 standard normal ('logit_normal')."""
        values = torch.as_tensor(values, dtype=torch.float64)
        if self.timestep_sampling == 'uniform':
            t = values
            if self.discrete:
                n = self.num_train_timesteps
                t = (torch.floor(t * n).clamp(max=n - 1) + 1) / n
        else:
            t = torch.sigmoid(self.logit_mean + self.logit_std * values)
        return shift_times(t, self.shift).float()

    def draw(self, seeds, shape, device=None):
        """Every random choice of :meth:`loss`, from one CPU generator per
        sample seeded with ``seeds[i]``, drawn in this order: one float64
        base value for ``t`` (uniform or normal, see :meth:`times`), then
        the noise of one sample's latent ``shape`` (float32)."""
        bases, noises = [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            if self.timestep_sampling == 'uniform':
                bases.append(torch.rand((), generator=g, dtype=torch.float64))
            else:
                bases.append(torch.randn((), generator=g,
                                         dtype=torch.float64))
            noises.append(torch.randn(tuple(shape), generator=g))
        t = self.times(torch.stack(bases))
        return FlowDraws(t.to(device), torch.stack(noises).to(device))

    def loss(self, x0, denoiser, draws):
        """Flow-matching MSE of ``denoiser`` on latents ``x0``
        (``[B, ...]``), mean over the values of the global batch.

        ``draws``: a :class:`FlowDraws` (:meth:`draw`), or per-sample seeds.
        ``denoiser(x_t, timesteps)`` returns the predicted velocity.
        """
        if not isinstance(draws, FlowDraws):
            draws = self.draw(draws, x0.shape[1:], x0.device)
        x0 = x0.float()
        noise = draws.noise.to(x0.device, x0.dtype)
        t = draws.t.to(x0.device)
        x_t = interpolate(x0, noise, t)
        pred = denoiser(x_t, t * self.num_train_timesteps)
        error = (pred.float() - velocity_target(x0, noise)) ** 2
        per_value = error.numel() // len(error)
        return dict(loss=global_mean(error, len(error) * per_value))

    # sampling ------------------------------------------------------------
    def build_scheduler(self):
        """A fresh diffusers scheduler (they are stateful)."""
        config = dict(num_train_timesteps=self.num_train_timesteps)
        if self.scheduler == 'dpm_solver':
            from diffusers import DPMSolverMultistepScheduler
            config.update(prediction_type='flow_prediction',
                          use_flow_sigmas=True, flow_shift=self.sampling_shift,
                          algorithm_type='dpmsolver++', solver_order=2,
                          final_sigmas_type='zero')
            config.update(self._scheduler_config)
            config.pop('_class_name', None)
            config.pop('_diffusers_version', None)
            return DPMSolverMultistepScheduler(**config)
        from diffusers import FlowMatchEulerDiscreteScheduler
        config.update(shift=self.sampling_shift)
        config.update(self._scheduler_config)
        config.pop('_class_name', None)
        config.pop('_diffusers_version', None)
        return FlowMatchEulerDiscreteScheduler(**config)

    @torch.no_grad()
    def sample(self, shape, denoiser, generator=None, noise=None,
               num_inference_steps=None, guidance_scale=None,
               cfg_renorm='configured', **unused):
        """Latents ``[B, *shape[1:]]`` by integrating from noise.

        The denoiser gets each step's ``sigma * num_train_timesteps`` as
        its timesteps, the training convention.
        With ``guidance_scale != 1`` the denoiser sees ``2B`` rows, the
        latents twice (conditional rows, then the null rows, the order the
        adapter built its condition in) and the prediction is
        :func:`guide`'s combination; otherwise ``B`` rows. A sequence of
        ``k`` scales guides serially by ``k`` null row groups (``(1 + k)
        B`` rows): ``g = cond``, then ``g = guide(g, null_j, scale_j)``
        (BAGEL's text-then-image editing guidance).

        Args:
            shape: ``(B, C, h, w)`` (any latent shape with the batch first).
            denoiser: ``denoiser(x_t, timesteps) -> velocity``.
            generator: a ``torch.Generator`` for the initial noise (CPU
                draws, so a seed gives the same images on every device).
            noise: the initial noise itself, instead.
            cfg_renorm: this call's renorm (``CFG_RENORMS``) instead of the
                configured one.
        """
        steps = num_inference_steps or self.num_inference_steps
        scale = self.guidance_scale if guidance_scale is None \
            else guidance_scale
        scales = tuple(float(s) for s in scale) \
            if isinstance(scale, (list, tuple)) else \
            (() if float(scale) == 1 else (float(scale), ))
        if noise is None:
            noise = torch.randn(tuple(shape), generator=generator)
        x = noise.float()
        if cfg_renorm == 'configured':
            cfg_renorm = self.cfg_renorm
        elif cfg_renorm not in CFG_RENORMS:
            raise ValueError(f"cfg_renorm='{cfg_renorm}' is not one of "
                             f'{CFG_RENORMS}')
        scheduler = self.build_scheduler()
        if self.sigma_grid == 'uniform':
            # The scheduler shifts them and appends the final 0.
            scheduler.set_timesteps(sigmas=torch.linspace(
                1, 0, steps + 1)[:-1].tolist())
        else:
            scheduler.set_timesteps(steps)
        x = x * getattr(scheduler, 'init_noise_sigma', 1.0)
        low, high = self.cfg_interval
        for i, timestep in enumerate(scheduler.timesteps):
            rows = torch.cat([x] * (1 + len(scales)))
            # The step's exact sigma on the training scale: the DPM-Solver
            # rounds its ``timesteps`` to integers, the sigmas it integrates
            # with are not, and training saw ``t * N`` unrounded.
            sigma = scheduler.sigmas[i].float()
            t = (sigma * self.num_train_timesteps).expand(len(rows))
            pred = denoiser(rows, t).float()
            if scales:
                cond, *nulls = pred.chunk(1 + len(scales))
                pred = cond
                if low < float(sigma) <= high:
                    pred = self._guide(cond, nulls, scales, cfg_renorm)
            x = scheduler.step(pred, timestep, x).prev_sample.float()
        return x

    def _guide(self, cond, nulls, scales, mode):
        guided = cond
        for j, (null, scale) in enumerate(zip(nulls, scales)):
            guided = guide(guided, null, scale)
            if j == 0 and mode == 'text_channel':
                guided = renorm(guided, cond, 'channel', self.cfg_renorm_min)
        if mode == 'global' and self.cfg_renorm_group:
            group = self.cfg_renorm_group
            guided = torch.cat([
                renorm(g, c, mode, self.cfg_renorm_min)
                for g, c in zip(guided.split(group), cond.split(group))])
        elif mode in ('global', 'sample', 'channel'):
            guided = renorm(guided, cond, mode, self.cfg_renorm_min)
        return guided

    def extra_repr(self):
        return (f'timestep_sampling={self.timestep_sampling}, '
                f'shift={self.shift}, scheduler={self.scheduler}, '
                f'num_inference_steps={self.num_inference_steps}, '
                f'guidance_scale={self.guidance_scale}')


__all__ = ['FlowDraws', 'FlowMatchingGenerator', 'guide', 'interpolate',
           'renorm', 'shift_times', 'velocity_target']
