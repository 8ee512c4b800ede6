"""MMEngine's CheckpointHook, in an order that never loses a checkpoint."""
import os.path as osp
from collections import deque

import torch
from mmengine.dist import all_reduce, is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.model import is_model_wrapper

from reca_toolkit.engine.checkpoint import (LAST_CHECKPOINT,
                                            remove_stale_temp_files,
                                            write_text_atomic)
from reca_toolkit.registry import HOOKS


class CheckpointError(RuntimeError):
    """A checkpoint that could not, or must not, be written."""


def non_finite_weights(model):
    """Names of ``model``'s floating-point parameters and buffers (this
    rank's shards, under FSDP) that hold NaN or inf."""
    model = model.module if is_model_wrapper(model) else model
    tensors = [(name, tensor) for name, tensor in
               list(model.named_parameters()) + list(model.named_buffers())
               if tensor.is_floating_point()]
    # One fused norm over everything is ~100x faster than isfinite per
    # tensor; it is non-finite if any element is (or if the squares
    # overflow, which the per-tensor look then tells apart).
    if not tensors or torch.isfinite(torch.nn.utils.get_total_norm(
            [t.detach() for _, t in tensors])):
        return []
    return [name for name, tensor in tensors
            if not torch.isfinite(tensor).all()]


def _on_any_rank(flag):
    """``flag`` or-ed over ranks: every rank takes the same branch and none is
    left waiting in a collective that the others skipped."""
    flag = torch.tensor(float(flag))
    all_reduce(flag, op='max')
    return bool(flag)


@HOOKS.register_module()
class CheckpointHook(MMEngineCheckpointHook):
    """``mmengine.hooks.CheckpointHook`` that cannot lose the last complete
    checkpoint. It is registered under MMEngine's name in the reca_toolkit
    scope, so every config's ``default_hooks.checkpoint`` builds it.

    MMEngine deletes the checkpoint that ``max_keep_ckpts`` retires before
    it writes the new one and rewrites ``last_checkpoint`` in place: with
    ``max_keep_ckpts=1``, a kill or a full disk during a save left no
    checkpoint and a ``last_checkpoint`` naming a deleted file. Here a save

    1. refuses weights that hold NaN or inf (:class:`CheckpointError`
       naming them), on every rank, so the last checkpoint stays finite;
    2. writes the new checkpoint (atomically: ``compat`` routes MMEngine's
       ``save_checkpoint`` through ``checkpoint.atomic_write``), and every
       rank learns whether that worked, so a failed write stops them all
       with the same :class:`CheckpointError`;
    3. then writes ``last_checkpoint``, atomically;
    4. only then deletes the checkpoints that ``max_keep_ckpts`` retires.

    Before training, temporary files left by interrupted writes are
    deleted. The arguments are MMEngine's.
    """

    def before_train(self, runner):
        super().before_train(runner)
        if is_main_process():
            for path in remove_stale_temp_files(self.out_dir,
                                                runner.work_dir):
                runner.logger.warning(
                    f'removed {path}, left by a checkpoint write that was '
                    'interrupted')

    def save_now(self, runner):
        """Save at the boundary after iteration ``runner.iter`` (all its
        hooks have run), unless that iteration is saved already; return the
        checkpoint's path. Used when training is stopped by a signal."""
        step = runner.iter
        path = self.file_backend.join_path(self.out_dir,
                                           self.filename_tmpl.format(step))
        if self.last_ckpt != path:
            self._save_checkpoint_with_step(
                runner, step, meta=dict(epoch=runner.epoch, iter=step))
        return path

    def _save_checkpoint_with_step(self, runner, step, meta):
        filename = self.filename_tmpl.format(step)
        path = self.file_backend.join_path(self.out_dir, filename)
        previous = runner.message_hub.get_info('last_ckpt')
        kept = (f'the last checkpoint ({previous}) is kept' if previous
                else 'no checkpoint was written before')
        bad = non_finite_weights(runner.model)
        if _on_any_rank(bool(bad)):
            raise CheckpointError(
                f'refusing to write {filename}: {len(bad)} weight tensors '
                'hold NaN or inf on this rank ('
                + ', '.join(bad[:5]) + (', ...' if len(bad) > 5 else '')
                + f'); {kept}. Updates with a non-finite loss or gradient '
                'are skipped, so a step with finite gradients made these '
                'weights: lower the learning rate')
        retired = self._retire(runner, step)
        # Recorded before the save, as MMEngine does, so that the checkpoint
        # names itself.
        self.last_ckpt = path
        runner.message_hub.update_info('last_ckpt', path)
        error = None
        try:
            runner.save_checkpoint(
                self.out_dir, filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args,
                **self.args)
        except OSError as e:
            error = e
        if _on_any_rank(error is not None):
            raise CheckpointError(
                f'could not write checkpoint {path}: '
                + (str(error) if error else 'it failed on another rank')
                + f'; {kept} and {LAST_CHECKPOINT} names it. Fix the cause '
                '(free disk space) and continue with --resume') from error
        if not is_main_process():
            return
        write_text_atomic(osp.join(runner.work_dir, LAST_CHECKPOINT), path)
        for old in retired:
            old = self.file_backend.join_path(self.out_dir,
                                              self.filename_tmpl.format(old))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
            elif self.file_backend.isdir(old):
                # DeepSpeed saves checkpoints as folders.
                self.file_backend.rmtree(old)

    def _retire(self, runner, step):
        """Record ``step`` among the kept checkpoints (the checkpoint being
        written stores the list) and return the steps it pushes out."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids
                                        and self.keep_ckpt_ids[-1] == step):
            # The same step is saved twice when save_best re-saves it.
            return []
        kept = list(self.keep_ckpt_ids) + [step]
        retired = kept[:-self.max_keep_ckpts]
        self.keep_ckpt_ids = deque(kept[-self.max_keep_ckpts:],
                                   self.max_keep_ckpts)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))
        return retired
