"""Checkpoint files that a kill, a full disk or a bad ``last_checkpoint``
cannot take away.

* :func:`atomic_write`: a file gets its final name only once it is complete
  and on disk (temporary file, fsync, rename, fsync of the folder), so a
  name never points at a half-written file and a kill at any byte leaves
  the previous file untouched.
* :func:`find_latest_checkpoint`: the newest *complete* checkpoint of a
  work directory, whatever ``last_checkpoint`` says (it may name a deleted
  file, be empty, or lag behind).
* :func:`remove_stale_temp_files`: the temporary files of writes that a
  kill interrupted.

``compat.apply()`` routes MMEngine's ``save_checkpoint`` and
``find_latest_checkpoint`` here; :class:`~reca_toolkit.engine.hooks.
CheckpointHook` writes the new checkpoint before it deletes an old one.
"""
import glob
import os
import os.path as osp
import re
import zipfile

from mmengine.logging import print_log

LAST_CHECKPOINT = 'last_checkpoint'
# iter_N.pth / epoch_N.pth: the names CheckpointHook gives resumable
# checkpoints (best_*.pth hold no optimizer state and are never resumed).
_RESUMABLE = re.compile(r'(?:iter|epoch)_(\d+)\.pth')
_TEMP_SUFFIX = '.tmp-'


def atomic_write(path, write):
    """Create or replace ``path`` by calling ``write(temporary_path)``.

    The temporary file is removed when ``write`` fails (a full disk), and
    carries the writer's PID, so a file left by a killed process is
    recognisable as such (:func:`remove_stale_temp_files`).
    """
    path = str(path)
    tmp = f'{path}{_TEMP_SUFFIX}{os.getpid()}'
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        # The rename itself is only durable once the folder is synced.
        _fsync(osp.dirname(osp.abspath(path)))
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path, text):
    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_write(path, write)


def is_complete(path):
    """Whether ``path`` is a whole ``torch.save`` file: its zip directory
    is written last, so a file cut short anywhere has none."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (OSError, zipfile.BadZipFile):
        return False


def _named_in_last_checkpoint(work_dir):
    try:
        with open(osp.join(work_dir, LAST_CHECKPOINT)) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def find_latest_checkpoint(work_dir):
    """The complete resumable checkpoint with the highest step in
    ``work_dir`` (and in the folder ``last_checkpoint`` points into, for a
    ``CheckpointHook`` with its own ``out_dir``); None if there is none.

    ``last_checkpoint`` only says where to look: it is stale after a kill
    between writing a checkpoint and updating it, and MMEngine's own hook
    wrote it non-atomically.
    """
    named = _named_in_last_checkpoint(work_dir)
    folders = {osp.abspath(work_dir)}
    if named is not None and '://' not in named:
        folders.add(osp.dirname(osp.abspath(named)))
    steps = {}
    for folder in folders:
        for name in os.listdir(folder) if osp.isdir(folder) else ():
            match = _RESUMABLE.fullmatch(name)
            if match:
                steps[osp.join(folder, name)] = int(match.group(1))
    for path in sorted(steps, key=steps.get, reverse=True):
        if is_complete(path):
            if named is not None and osp.abspath(named) != path:
                print_log(f"{LAST_CHECKPOINT} names '{named}'; the newest "
                          f"complete checkpoint is '{path}'",
                          logger='current', level=30)
            return path
        print_log(f"'{path}' is incomplete (cut short); it is not resumed",
                  logger='current', level=30)
    # A custom filename_tmpl: trust last_checkpoint if its file is whole.
    if named is not None and '://' in named:
        return named
    if named is not None and is_complete(named):
        return named
    return None


def remove_stale_temp_files(*folders):
    """Delete the temporary files of interrupted checkpoint writes in
    ``folders`` and return their paths.

    Call it when no save of this work directory is running (before
    training starts): a run writes its checkpoints from one process.
    """
    removed = []
    for folder in dict.fromkeys(folders):
        for path in glob.glob(osp.join(glob.escape(folder),
                                       f'*{_TEMP_SUFFIX}*')):
            if osp.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed
