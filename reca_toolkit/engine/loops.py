"""The iteration-based train loop of every reca_toolkit config."""
import bisect
import functools

import torch
from mmengine.dist import all_reduce, barrier, get_world_size
from mmengine.logging import print_log
from mmengine.runner.loops import (BaseLoop, IterBasedTrainLoop,
                                   _InfiniteDataloaderIterator)
from mmengine.runner.utils import calc_dynamic_intervals

from reca_toolkit.engine.hooks.checkpoint_hook import CheckpointHook
from reca_toolkit.engine.nonfinite import SkipNonFiniteUpdates
from reca_toolkit.engine.preemption import (EXIT_PREEMPTED, StopSignals,
                                            TrainingPreempted,
                                            workers_ignore_stop_signals)
from reca_toolkit.registry import LOOPS


def global_mean(log_vars):
    """``log_vars`` averaged over ranks.

    Each rank's loss is its share of the global mean (``losses.global_mean``
    scales it by the world size), so their average is the loss a single
    process computes on the whole batch. Unreduced, every rank logged its
    own, and rank 0's went into the logs and into the smoothing window that
    checkpoints carry across a resume. Ranks log the same keys: every step
    draws every source on every rank.
    """
    if get_world_size() == 1:
        return log_vars
    values = torch.stack([torch.as_tensor(v).detach().float().reshape(())
                          for v in log_vars.values()])
    all_reduce(values, op='mean')
    return dict(zip(log_vars, values.unbind()))


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` that resumes the data stream in O(1), survives
    non-finite steps, stops cleanly on a signal and logs global losses.

    * Resume: MMEngine's loop resumes at iteration k by loading and
      discarding k batches. With a batch sampler that has ``set_start_iter``
      (the ``MultiSourceBatchSampler``), this loop starts the stream at k
      directly; the samples of every step are the same as in an
      uninterrupted run. The data iterator is created in :meth:`run`, after
      the resume, so no batch is prefetched from the wrong position.
    * Non-finite steps: an update whose loss or gradient norm is NaN or inf
      is not applied (``nonfinite.SkipNonFiniteUpdates``); after
      ``max_nonfinite_steps`` in a row training stops with
      ``NonFiniteLossError`` naming the iteration, objective and losses.
    * Signals: on SIGTERM or SIGUSR1 the running step completes, the
      ``CheckpointHook`` saves, and ``TrainingPreempted`` is raised
      (``tools/train.py`` exits with status 75, which
      ``tools/slurm_train.sh`` requeues). A validation due at that step is
      left out.
    * Logging: the losses hooks see and log are averaged over ranks
      (:func:`global_mean`), equal to a single process's.
    """

    def __init__(self, runner, dataloader, max_iters, val_begin=1,
                 val_interval=1000, dynamic_intervals=None,
                 max_nonfinite_steps=3):
        BaseLoop.__init__(self, runner, dataloader)
        self._max_iters = int(max_iters)
        self._max_epochs = 1
        self._epoch = 0
        self._iter = 0
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False
        self.runner.visualizer.dataset_meta = getattr(
            self.dataloader.dataset, 'metainfo', None)
        self.dataloader_iterator = None
        self.dynamic_milestones, self.dynamic_intervals = \
            calc_dynamic_intervals(self.val_interval, dynamic_intervals)
        self.max_nonfinite_steps = max_nonfinite_steps
        self.updates = None

    def _start_data(self):
        # Set before the iterator starts the workers.
        self.dataloader.worker_init_fn = functools.partial(
            workers_ignore_stop_signals, self.dataloader.worker_init_fn)
        batch_sampler = self.dataloader.batch_sampler
        if hasattr(batch_sampler, 'set_start_iter'):
            self._restore_data_seed(batch_sampler.sampler)
            batch_sampler.set_start_iter(self._iter)
            self.dataloader_iterator = _InfiniteDataloaderIterator(
                self.dataloader)
            if self._iter:
                print_log(f'data stream resumed at iteration {self._iter}',
                          logger='current')
            return
        self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        if self._iter:
            print_log(f'{type(batch_sampler).__name__} cannot start at an '
                      f'iteration; loading and skipping {self._iter} batches',
                      logger='current', level=30)
            for _ in range(self._iter):
                next(self.dataloader_iterator)

    def _restore_data_seed(self, sampler):
        """Keep the data stream's seed across a resume.

        The Runner builds the sampler, seeded with a fresh ``runner.seed``
        when none is configured, before the resume restores the old seed.
        The stream's seed is kept in the message hub, which checkpoints save.
        """
        hub = self.runner.message_hub
        saved = hub.get_info('data_seed') if self._iter else None
        if saved is not None and saved != sampler.seed:
            sampler.reseed(saved)
        hub.update_info('data_seed', sampler.seed)

    def run(self):
        # Built here: the runner builds its optim wrapper after the loop.
        self.updates = SkipNonFiniteUpdates(self.runner.optim_wrapper,
                                            self.max_nonfinite_steps)
        with StopSignals() as stop:
            return self._run(stop)

    def _run(self, stop):
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        self._start_data()
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            signal_name = stop.received()
            if signal_name is not None:
                self._save_and_stop(signal_name)
            step = bisect.bisect(self.dynamic_milestones, self._iter + 1)
            self.val_interval = self.dynamic_intervals[step - 1]
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_iter(self, data_batch):
        self.runner.call_hook('before_train_iter', batch_idx=self._iter,
                              data_batch=data_batch)
        outputs = self.runner.model.train_step(data_batch,
                                               optim_wrapper=self.updates)
        outputs = self.updates.record(self.runner, self._iter + 1,
                                      global_mean(outputs))
        self.runner.call_hook('after_train_iter', batch_idx=self._iter,
                              data_batch=data_batch, outputs=outputs)
        self._iter += 1

    def _save_and_stop(self, signal_name):
        hook = next((h for h in self.runner.hooks
                     if isinstance(h, CheckpointHook)), None)
        path = hook.save_now(self.runner) if hook is not None else None
        # Ranks exit together, after rank 0 has written the checkpoint and
        # last_checkpoint: srun --kill-on-bad-exit and torchrun end every
        # rank as soon as one exits with a failure status.
        barrier()
        stopped = TrainingPreempted(signal_name, self._iter, path)
        self.runner.logger.warning(
            f'{stopped}; exiting with status {EXIT_PREEMPTED}, on which '
            'tools/slurm_train.sh requeues the job (elsewhere, run again '
            'with --resume)')
        raise stopped
