"""Training steps that a NaN or inf cannot corrupt.

A diverging learning rate or a bad batch makes a loss or gradient NaN; one
applied update makes every weight NaN, every later loss NaN, and the next
checkpoint worthless. ``ResumableIterBasedTrainLoop`` hands ``train_step``
a :class:`SkipNonFiniteUpdates` in place of the optim wrapper, so such an
update is never applied, and stops training with :class:`NonFiniteLossError`
when too many come in a row.
"""
import math

import torch
from mmengine.dist import all_reduce
from mmengine.optim import AmpOptimWrapper


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient norm."""


def _grad_norm(optim_wrapper):
    grads = [p.grad for group in optim_wrapper.optimizer.param_groups
             for p in group['params'] if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


def _describe(log_vars, grad_norm):
    """What was not finite, with every loss value and the gradient norm."""
    losses = {k: float(torch.as_tensor(v).detach())
              for k, v in log_vars.items() if k.startswith('loss')}
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    objectives = [k[len('loss_'):] for k in bad if k.startswith('loss_')]
    if objectives:
        what = f'non-finite loss of objective {", ".join(objectives)}'
    elif bad:
        what = 'non-finite loss'
    else:
        what = 'non-finite gradient norm'
    values = [f'{k}={v:.4g}' for k, v in losses.items()]
    if grad_norm is not None:
        values.append(f'grad_norm={grad_norm:.4g}')
    return f'{what} ({", ".join(values)})'


class SkipNonFiniteUpdates:
    """The optim wrapper ``train_step`` sees: the runner's, except that
    :meth:`update_params` drops an update whose loss or gradient norm is NaN
    or inf on any rank -- the gradients are zeroed, and weights and
    optimizer state stay as they were.

    Under ``AmpOptimWrapper`` only the loss is checked: its loss scaler
    already skips steps with non-finite (scaled) gradients, and lowers the
    scale, which it could not if this skipped them first.

    Args:
        optim_wrapper: the runner's ``OptimWrapper``.
        max_consecutive: :meth:`record` raises :class:`NonFiniteLossError`
            at this many skipped updates in a row.
    """

    def __init__(self, optim_wrapper, max_consecutive):
        if max_consecutive < 1:
            raise ValueError(
                f'max_nonfinite_steps must be at least 1, got '
                f'{max_consecutive}')
        self.optim_wrapper = optim_wrapper
        self.max_consecutive = max_consecutive
        self.skipped = False        # the last update that was due
        self.grad_norm = None       # of that update, on this rank
        self.consecutive = 0
        self._loss_finite = True    # over the steps accumulated into it

    def __getattr__(self, name):
        # Everything but update_params is the runner's optim wrapper's.
        return getattr(self.optim_wrapper, name)

    def update_params(self, loss, step_kwargs=None, zero_kwargs=None):
        wrapper = self.optim_wrapper
        self.skipped = False
        self._loss_finite &= bool(torch.isfinite(loss.detach()).all())
        # Backward runs on every rank whatever the loss: DDP reduces the
        # gradients in it, and a rank that skipped it would stall the rest.
        wrapper.backward(wrapper.scale_loss(loss))
        if not wrapper.should_update():
            return
        finite = self._loss_finite
        self._loss_finite = True
        self.grad_norm = None
        if not isinstance(wrapper, AmpOptimWrapper):
            self.grad_norm = _grad_norm(wrapper)
            finite = finite and math.isfinite(self.grad_norm)
        flag = torch.tensor(float(finite))
        all_reduce(flag, op='min')
        self.skipped = not bool(flag)
        if not self.skipped:
            wrapper.step(**(step_kwargs or {}))
        wrapper.zero_grad(**(zero_kwargs or {}))

    def record(self, runner, iteration, log_vars):
        """After iteration ``iteration`` (1-based): count a skipped update,
        warn about it, and raise :class:`NonFiniteLossError` at
        ``max_consecutive`` in a row. Returns what the hooks should log:
        ``log_vars``, or nothing for a skipped step, whose NaN would
        otherwise sit in the smoothing window of the logged losses."""
        if not self.skipped:
            self.consecutive = 0
            return log_vars
        self.consecutive += 1
        what = _describe(log_vars, self.grad_norm)
        hub = runner.message_hub
        total = hub.get_info('skipped_updates', 0) + 1
        hub.update_info('skipped_updates', total)
        hub.update_scalar('train/skipped_updates', total)
        if self.consecutive >= self.max_consecutive:
            first = iteration - self.consecutive + 1
            raise NonFiniteLossError(
                f'training stopped at iteration {iteration}: '
                f'{self.consecutive} consecutive updates (iterations '
                f'{first}-{iteration}) were skipped, the last for a {what}. '
                'Skipped updates leave the weights as they were, so the '
                'last checkpoint is finite. Lower the learning rate '
                '(optim_wrapper.optimizer.lr) or clip gradients '
                '(optim_wrapper.clip_grad), check the data of these '
                'iterations, or allow longer runs of skipped updates with '
                'train_cfg.max_nonfinite_steps')
        runner.logger.warning(
            f'iteration {iteration}: update skipped for a {what}; '
            f'{self.consecutive} in a row, training stops at '
            f'{self.max_consecutive} (train_cfg.max_nonfinite_steps)')
        return {}
