# tiny_reca.py under FSDP (RecAFlexibleRunner + RecAFSDPStrategy); launch with
# 2 processes. One FSDP unit per transformer block; full state dicts, so a
# checkpoint loads without FSDP too.
_base_ = ['./tiny_reca.py']

runner_type = 'reca_toolkit.RecAFlexibleRunner'
strategy = dict(
    type='reca_toolkit.RecAFSDPStrategy',
    state_dict_cfg='full',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        use_orig_params=True,
        auto_wrap_policy='reca_toolkit.transformer_layer_wrap_policy'))
