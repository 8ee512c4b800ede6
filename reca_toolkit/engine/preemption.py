"""Stopping at a step boundary when the cluster asks.

Slurm sends SIGTERM when it preempts or cancels a job (and SIGKILL after
the partition's grace time), and the signal of ``#SBATCH --signal`` (for
example ``--signal=USR1@120``: SIGUSR1 two minutes before the time
limit). Either one makes ``ResumableIterBasedTrainLoop`` finish the running
step, save a checkpoint and raise :class:`TrainingPreempted`, on which
``tools/train.py`` exits with :data:`EXIT_PREEMPTED`; ``tools/slurm_train.sh``
requeues the job on that status and the requeued run resumes.
"""
import os
import signal
import threading

import torch
from mmengine.dist import all_reduce

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# EX_TEMPFAIL of sysexits.h: "a temporary failure; the user is invited to
# retry". Not a status Python or torch exit with on their own.
EXIT_PREEMPTED = 75


class TrainingPreempted(Exception):
    """Training stopped on a signal, after saving ``checkpoint``."""

    def __init__(self, signal_name, iteration, checkpoint):
        super().__init__(
            f'{signal_name} received: stopped after iteration {iteration}'
            + (f' and saved {checkpoint}' if checkpoint else
               ' without a checkpoint (no CheckpointHook is configured)'))
        self.signal_name = signal_name
        self.iteration = iteration
        self.checkpoint = checkpoint


class StopSignals:
    """While active, :data:`STOP_SIGNALS` only record that they came;
    :meth:`received` says so at a step boundary. The previous handlers are
    restored on exit. A no-op outside the main thread, where Python cannot
    handle signals.
    """

    def __init__(self):
        self._received = 0
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _record(self, signum, frame):
        # Only remember it: the step being run completes first, so the
        # checkpoint holds a consistent model and optimizer.
        self._received = signum

    def received(self):
        """The stop signal's name if one came to any rank, else None.

        Ranks agree (one all-reduce a step when distributed), so that all of
        them stop at the same step and save together.
        """
        signum = torch.tensor(float(self._received))
        all_reduce(signum, op='max')
        return signal.Signals(int(signum)).name if signum else None


def workers_ignore_stop_signals(worker_init_fn, worker_id):
    """``worker_init_fn`` for DataLoader workers (``worker_init_fn`` runs
    after it).

    Slurm signals every process of a job step. A worker would die of it,
    and the trainer then fail with "DataLoader worker ... exited
    unexpectedly" instead of saving. Here the stop signals are blocked and
    a thread takes them: one from the worker's parent (the DataLoader
    ending it) still ends the worker, any other is left to the trainer.
    """
    if hasattr(signal, 'sigwaitinfo'):      # not on macOS
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(target=_end_on_parents_signal, daemon=True).start()
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


def _end_on_parents_signal():
    while True:
        if signal.sigwaitinfo(STOP_SIGNALS).si_pid == os.getppid():
            os._exit(0)
