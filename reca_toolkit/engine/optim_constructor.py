"""AdamW parameter groups for fine-tuning LLM-based models."""
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from reca_toolkit.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                                   OPTIMIZERS)


def is_no_decay(module, name):
    """Norm scales, biases and embedding tables.

    Decided by module type and name, not by ``param.ndim < 2``: under FSDP
    every parameter is a 1-D view of its shard.
    """
    return (name == 'bias' or isinstance(module, nn.Embedding)
            or 'norm' in type(module).__name__.lower())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DecayGroupsOptimWrapperConstructor:
    """Two groups: weight decay on matrices, none on norms, biases,
    embedding tables and the modules the UMM exempts
    (``BaseUMM.no_decay_modules``: Harmon's diffusion head); frozen
    parameters are not given to the optimizer.

    MMEngine's default constructor puts frozen parameters in the optimizer
    too and does not recognise RMSNorm; this one does what the RecA authors'
    configs do (no decay on 1-D parameters and embeddings).
    """

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        if paramwise_cfg:
            raise ValueError('DecayGroupsOptimWrapperConstructor takes no '
                             f'paramwise_cfg, got {paramwise_cfg}')
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)

    def __call__(self, model):
        if is_model_wrapper(model):
            model = model.module
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        optimizer_cfg = dict(wrapper_cfg.pop('optimizer'))
        weight_decay = optimizer_cfg.pop('weight_decay', 0.0)
        exempt = {id(p) for m in model.umm.no_decay_modules()
                  for p in m.parameters()}
        decay, no_decay, seen = [], [], set()
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if param.requires_grad and id(param) not in seen:
                    seen.add(id(param))
                    (no_decay if id(param) in exempt
                     or is_no_decay(module, name) else decay).append(param)
        optimizer_cfg['params'] = [
            dict(params=decay, weight_decay=weight_decay),
            dict(params=no_decay, weight_decay=0.0)
        ]
        count = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
        print_log(
            f'optimizer: {count(decay):,} parameters with weight decay '
            f'{weight_decay}, {count(no_decay):,} without (norms, biases, '
            'embeddings, modules the UMM exempts); frozen parameters are not '
            'optimised',
            logger='current')
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(wrapper_cfg,
                                    default_args=dict(optimizer=optimizer))
