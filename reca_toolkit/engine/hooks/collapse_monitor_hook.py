"""Watch for RecA's autoencoder shortcut, and for what it costs.

Reconstruction can improve while what RecA is for -- text-to-image quality
-- falls: when the understanding view carries enough to copy the image (the
RecA paper's collapse at equal input and target resolution, Fig. 12), or
when generation learns to read the image embeddings in place of the prompt
(the tiny Janus of docs/toy_study.md). In a UMM whose understanding shares
weights with generation, understanding can pay for it too (a reproduction
of RecA on BAGEL saw MathVista fall 71.6 -> 51.6). Neither number shows it
alone; this hook logs the reconstruction loss beside a validation score and
warns when they part.
"""
import torch
from mmengine.hooks import Hook

from reca_toolkit.registry import HOOKS


def shortcut_signal(points, patience=2, min_drop=0.02):
    """Whether ``points`` end in a shortcut.

    Args:
        points: ``(recon_loss, quality)`` per validation, oldest first;
            ``recon_loss`` is the mean training loss over the interval that
            ended there (None before any training).
        patience: how many consecutive intervals the reconstruction loss
            must have fallen.
        min_drop: how much quality must have fallen over those intervals.

    Returns:
        ``(recon_before, recon_now, quality_before, quality_now)`` of the
        window when it is a shortcut, else None.
    """
    window = points[-(patience + 1):]
    if len(window) < patience + 1 or any(r is None for r, _ in window):
        return None
    recon = [r for r, _ in window]
    if not all(b < a for a, b in zip(recon, recon[1:])):
        return None
    first, last = window[0][1], window[-1][1]
    if last > first - min_drop:
        return None
    return recon[0], recon[-1], first, last


# watch -> (quality scalar, shortcut scalar, what the warning says)
WATCHES = dict(
    generation=(
        'collapse/t2i_quality', 'collapse/shortcut',
        'possible autoencoder shortcut: {recon} fell {r0:.4f} -> {r1:.4f} '
        'over the last {n} validation intervals while {quality} fell '
        '{q0:.4f} -> {q1:.4f}: generation is learning to copy the '
        "understanding view instead of following prompts -- lower the view's "
        'resolution (the information bottleneck), the learning rate, or '
        'replay text-to-image data'),
    understanding=(
        'collapse/und_quality', 'collapse/und_shortcut',
        'understanding is paying for reconstruction: {recon} fell '
        '{r0:.4f} -> {r1:.4f} over the last {n} validation intervals while '
        '{quality} fell {q0:.4f} -> {q1:.4f} -- keep (or raise) image-to-text '
        'in the mix, lower the learning rate, or freeze the understanding '
        'path'))


@HOOKS.register_module()
class CollapseMonitorHook(Hook):
    """At each validation, log the mean reconstruction loss since the last
    one (``collapse/recon_loss``) and a validation score, and warn when the
    loss has fallen over each of the last ``patience`` intervals while the
    score fell by at least ``min_drop`` (the shortcut scalar: 1 then, else
    0). One hook per watched score.

    Args:
        recon_key: the training output to follow (``loss_recon``).
        quality_key: the validation metric (``geneval_shapes/overall``;
            ``describe/accuracy`` for understanding).
        watch: what the score measures, naming its scalars and advice:
            ``'generation'`` (``collapse/t2i_quality``,
            ``collapse/shortcut``) or ``'understanding'``
            (``collapse/und_quality``, ``collapse/und_shortcut``).
        patience, min_drop: see :func:`shortcut_signal`.
    """

    priority = 'LOW'

    def __init__(self, recon_key='loss_recon',
                 quality_key='geneval_shapes/overall', watch='generation',
                 patience=2, min_drop=0.02):
        if watch not in WATCHES:
            raise ValueError(f'CollapseMonitorHook watch={watch!r}: valid '
                             f'choices are {sorted(WATCHES)}')
        self.recon_key = recon_key
        self.quality_key = quality_key
        self.watch = watch
        self.patience = patience
        self.min_drop = min_drop
        self.points = []
        self.total = self.count = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if outputs and self.recon_key in outputs:
            self.total += float(torch.as_tensor(outputs[self.recon_key])
                                .detach())
            self.count += 1

    def after_val_epoch(self, runner, metrics=None):
        if not metrics or self.quality_key not in metrics:
            raise KeyError(
                f"CollapseMonitorHook: validation gave no '{self.quality_key}'"
                f'; it gave {sorted(metrics or {})}')
        recon = self.total / self.count if self.count else None
        quality = float(metrics[self.quality_key])
        self.points.append((recon, quality))
        self.total = self.count = 0
        signal = shortcut_signal(self.points, self.patience, self.min_drop)
        quality_name, shortcut_name, warning = WATCHES[self.watch]
        scalars = {quality_name: quality,
                   shortcut_name: float(signal is not None)}
        if recon is not None:
            scalars['collapse/recon_loss'] = recon
        runner.visualizer.add_scalars(scalars, step=runner.iter)
        recon_text = 'n/a' if recon is None else f'{recon:.4f}'
        runner.logger.info(
            f'collapse monitor at iteration {runner.iter}: '
            f'{self.recon_key} {recon_text}, {self.quality_key} '
            f'{quality:.4f}')
        if signal is not None:
            r0, r1, q0, q1 = signal
            runner.logger.warning(warning.format(
                recon=self.recon_key, quality=self.quality_key,
                n=self.patience, r0=r0, r1=r1, q0=q0, q1=q1))
