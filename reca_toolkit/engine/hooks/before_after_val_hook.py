"""Validate before training starts, and end with a before/after table."""
import json
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from reca_toolkit.registry import HOOKS


def before_after_table(before, after, title=''):
    """Text table of each metric before and after, and the change."""
    rows = [('metric', 'before', 'after', 'change')]
    for key in after:
        if key in before and isinstance(after[key], (int, float)):
            rows.append((key, f'{before[key]:.3f}', f'{after[key]:.3f}',
                         f'{after[key] - before[key]:+.3f}'))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ['  '.join([r[0].ljust(widths[0])] +
                       [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
             for r in rows]
    lines.insert(1, '-' * len(lines[0]))
    return (title + '\n' if title else '') + '\n'.join(lines)


@HOOKS.register_module()
class BeforeAfterValHook(Hook):
    """Run the validation loop once before the first iteration, so the
    starting model's scores are measured by the same loop and metric as the
    trained model's, then log a table of both after training and write them
    to ``<log_dir>/before_after.json``.

    "After" is the last validation of the run: set ``train_cfg.val_interval``
    (or ``val_begin``) so that one falls on the last iteration.

    Args:
        prefix: only metrics whose name starts with this are tabulated
            (``'geneval_shapes/'``); None for all.
    """

    priority = 'LOW'

    def __init__(self, prefix=None):
        self.prefix = prefix
        self.before = self.last = None
        self.start_iter = self.last_iter = None

    def before_train(self, runner):
        if runner.val_loop is None:
            raise ValueError('BeforeAfterValHook needs a val_dataloader, '
                             'val_evaluator and val_cfg in the config')
        self.start_iter = runner.iter
        runner.val_loop.run()

    def after_val_epoch(self, runner, metrics=None):
        metrics = {k: v for k, v in (metrics or {}).items()
                   if self.prefix is None or k.startswith(self.prefix)}
        if self.before is None:
            self.before = metrics
        else:
            self.last, self.last_iter = metrics, runner.iter

    def after_train(self, runner):
        if self.last is None:
            runner.logger.warning(
                'BeforeAfterValHook: no validation ran after iteration '
                f'{self.start_iter}; set train_cfg.val_interval so that one '
                'falls on the last iteration')
            return
        runner.logger.info('\n' + before_after_table(
            self.before, self.last,
            f'validation at iteration {self.start_iter} (before) and '
            f'{self.last_iter} (after)'))
        if is_main_process():
            with open(osp.join(runner.log_dir, 'before_after.json'), 'w') as f:
                json.dump(dict(before=self.before, after=self.last,
                               before_iter=self.start_iter,
                               after_iter=self.last_iter), f, indent=2)
