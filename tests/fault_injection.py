"""Training runs with a fault injected, for the fault-injection tests.

A run that must really die (SIGKILL) or really receive a signal runs
``tools/train.py`` in a child process. Children fork from a forkserver
that imported torch, transformers and reca_toolkit once (about 15 s of a
fresh interpreter on a 2-core machine) and never computed anything, so
forking it is safe and each child starts in well under a second.
"""
import argparse
import contextlib
import multiprocessing
import os
import runpy
import signal
import sys
from pathlib import Path

from mmengine.config import DictAction

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / 'tests/configs/tiny_reca.py')
# The tiny demo as short as a fault needs: no sample grids, batches of 2,
# a log line and a checkpoint every iteration.
SHORT = ['custom_hooks=[]', 'train_dataloader.batch_size=2',
         'default_hooks.logger.interval=1',
         'default_hooks.checkpoint.interval=1']

# What the forkserver imports (matplotlib for the Runner's Visualizer). Not
# this module: Python 3.11's forkserver ignores the parent's sys.path when
# it preloads, and tests/ is not on its own.
PRELOAD = ['matplotlib.pyplot', 'reca_toolkit.datasets', 'reca_toolkit.engine',
           'reca_toolkit.evaluation', 'reca_toolkit.models']


def options(*overrides):
    """``--cfg-options`` strings as the dict ``train()`` takes."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *overrides]).cfg_options


@contextlib.contextmanager
def child(args, log, fault=None):
    """A started :func:`train_cli` child process; killed, with its process
    group, if the test ends before it does."""
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload(PRELOAD)
    process = context.Process(target=train_cli, args=(args, log, fault))
    process.start()
    try:
        yield process
    finally:
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.kill()
            process.join()


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_writing(name, fraction):
    """SIGKILL once ``fraction`` of checkpoint ``name``'s bytes are on
    disk, in the middle of its (temporary) file."""
    from mmengine.fileio.backends import LocalBackend
    put = LocalBackend.put

    def put_then_die(self, obj, filepath):
        if Path(filepath).name.startswith(f'{name}.tmp-'):
            with open(filepath, 'wb') as f:
                f.write(obj[:int(len(obj) * fraction)])
                f.flush()
                os.fsync(f.fileno())
            _die()
        return put(self, obj, filepath)

    LocalBackend.put = put_then_die


def _kill_renaming(name, occurrence):
    """SIGKILL with ``name``'s temporary file complete, before the rename
    that gives it its name, the ``occurrence``-th time it is written."""
    replace, seen = os.replace, []

    def replace_or_die(src, dst):
        if Path(dst).name == name:
            seen.append(dst)
            if len(seen) == occurrence:
                _die()
        return replace(src, dst)

    os.replace = replace_or_die


def _kill_deleting():
    """SIGKILL before the retired checkpoint is deleted."""
    from mmengine.fileio.backends import LocalBackend

    def die(self, filepath):
        _die()

    LocalBackend.remove = die


FAULTS = {'writing': _kill_writing, 'renaming': _kill_renaming,
          'deleting': _kill_deleting}


def train_cli(args, log, fault=None):
    """``tools/train.py args`` with ``fault = (kind, *arguments)`` of
    :data:`FAULTS` installed; stdout and stderr go to ``log``.

    The child leads a process group of its own, like a Slurm job step, so
    that a signal to the group also reaches its DataLoader workers.
    """
    os.setpgrp()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if fault is not None:
        FAULTS[fault[0]](*fault[1:])
    sys.argv = [str(REPO / 'tools/train.py'), *map(str, args)]
    runpy.run_path(sys.argv[0], run_name='__main__')
