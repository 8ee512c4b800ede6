"""Low-rank adapters (peft's LoRA) on a UMM's LLM, and merging them back.

With adapters the LLM's own weights stay frozen in their storage dtype, so a
7B model trains with its 14 GB of bf16 weights plus a few hundred MB of
adapters and their optimizer state (docs/performance.md).
"""

PEFT_HINT = "lora= needs peft: pip install 'reca_toolkit[lora]'"


def add_lora(module, config, dtype):
    """Inject adapters into ``module`` in place: its weights freeze, the
    adapters (in ``dtype``) train."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ImportError(PEFT_HINT) from None
    inject_adapter_in_model(LoraConfig(**config), module)
    for name, param in module.named_parameters():
        adapter = '.lora_' in name
        param.requires_grad_(adapter)
        if adapter:
            param.data = param.data.to(dtype)


def merged_state_dict(model):
    """``model.state_dict()`` with every adapter folded into its base weight,
    under the key names of the model without adapters."""
    from peft.tuners.lora import LoraLayer
    state = model.state_dict()
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        prefix = f'{name}.' if name else ''
        base = state.pop(f'{prefix}base_layer.weight')
        delta = sum(module.get_delta_weight(adapter).float()
                    for adapter in module.active_adapters)
        state[f'{prefix}weight'] = (base.float() + delta).to(base.dtype)
        if f'{prefix}base_layer.bias' in state:
            state[f'{prefix}bias'] = state.pop(f'{prefix}base_layer.bias')
    return {k: v for k, v in state.items() if '.lora_' not in k}
