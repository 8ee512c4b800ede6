"""AdamW groups: decay on matrices only; frozen parameters left out."""
from conftest import build_tiny_model
from reca_toolkit.registry import OPTIM_WRAPPER_CONSTRUCTORS


def build_optimizer(model):
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='DecayGroupsOptimWrapperConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(
            type='AdamW', lr=1e-3, weight_decay=0.02))))
    return constructor(model).optimizer


def test_frozen_parameters_are_not_optimised():
    model = build_tiny_model()
    decay, no_decay = build_optimizer(model).param_groups
    optimised = {id(p) for p in decay['params'] + no_decay['params']}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert optimised == trainable
    frozen = list(model.umm.hf_model.model.vision_model.parameters()) + list(
        model.umm.hf_model.model.vqmodel.parameters())
    assert frozen and not any(id(p) in optimised for p in frozen)


def test_no_decay_on_norms_biases_and_embeddings():
    model = build_tiny_model()
    decay, no_decay = build_optimizer(model).param_groups
    assert decay['weight_decay'] == 0.02 and no_decay['weight_decay'] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay['params']}
    decay_names = {names[id(p)] for p in decay['params']}
    assert 'umm.language_model.embed_tokens.weight' in no_decay_names
    assert 'umm.generator.code_embeddings.weight' in no_decay_names
    assert 'umm.language_model.norm.weight' in no_decay_names
    assert 'umm.generator.head.proj_out.bias' in no_decay_names
    assert 'umm.lm_head.weight' in decay_names
    assert 'umm.language_model.layers.0.self_attn.q_proj.weight' in \
        decay_names
    assert all(p.ndim >= 2 for p in decay['params'])
