"""Export the trained UMM in its Hugging Face layout when training ends."""
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from reca_toolkit.registry import HOOKS


@HOOKS.register_module()
class HFExportHook(Hook):
    """Write ``work_dir/<out_dir>`` with ``umm.save_pretrained`` after the
    last iteration, loadable by the model family's ``from_pretrained``."""

    priority = 'VERY_LOW'

    def __init__(self, out_dir='hf_export'):
        self.out_dir = out_dir

    def after_train(self, runner):
        if not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        path = model.umm.save_pretrained(osp.join(runner.work_dir,
                                                  self.out_dir))
        print_log(f'exported the trained model to {path}', logger='current')
