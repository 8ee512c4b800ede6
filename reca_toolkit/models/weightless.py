"""Real-size models without their weights, for sizing and throughput work.

Parameters are created on the meta device (no memory, no initialisation
time); buffers stay real. ``torch.device('meta')`` would put buffers on meta
too, and ``to_empty`` would then leave garbage in the buffers a model
computes at construction and does not save (rotary ``inv_freq``, position
ids). :func:`materialize` later gives the parameters random values on a
device.
"""
import contextlib

import torch
from torch import nn

from reca_toolkit.registry import MODELS, UMMS


@contextlib.contextmanager
def parameters_on_meta():
    """Every parameter registered inside the block lives on the meta device.
    """
    register = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to('meta'),
                                 requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def weightless_model_cfg(model_cfg):
    """A RecAModel config whose UMM builds from its architecture alone."""
    umm_cfg = dict(model_cfg['umm'])
    umm_cls = UMMS.get(umm_cfg['type'])
    if not hasattr(umm_cls, 'weightless_config'):
        raise ValueError(f"model.umm: {umm_cfg['type']} has no "
                         'weightless_config(), so it cannot be built '
                         'without its weights')
    return dict(model_cfg, umm=umm_cls.weightless_config(umm_cfg))


def build_weightless(model_cfg):
    """The config's model with meta parameters and real buffers."""
    with parameters_on_meta():
        return MODELS.build(weightless_model_cfg(model_cfg))


@torch.no_grad()
def materialize(model, device, seed=0):
    """Give meta parameters random values on ``device``; move buffers there.

    Matrices get N(0, 0.02), the usual transformer init, so activations and
    losses are in a realistic range; vectors named ``weight`` (norm scales)
    get ones and the rest zeros. Shared parameters stay shared.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    made = {}
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is None or not param.is_meta:
                continue
            if id(param) not in made:
                value = torch.empty_like(param, device=device)
                if value.ndim >= 2:
                    value.normal_(0, 0.02, generator=generator)
                else:
                    value.fill_(1.0 if name == 'weight' else 0.0)
                made[id(param)] = nn.Parameter(
                    value, requires_grad=param.requires_grad)
            module._parameters[name] = made[id(param)]
    return model.to(device)
