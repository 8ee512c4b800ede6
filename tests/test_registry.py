"""Every registered component builds from a config; bad names get help."""
import pytest
import torch
from mmengine.runner import Runner
from transformers import PreTrainedTokenizerBase

import projects.janus_toy.janus_toy  # noqa: F401  the toy's components
import reca_toolkit.registry as registries
from conftest import build_tiny_model, tiny_model_cfg
from reca_toolkit.registry import SuggestingRegistry


def scoped_registries():
    found = {}
    for name, registry in vars(registries).items():
        if isinstance(registry, SuggestingRegistry):
            found.setdefault(id(registry), (name, registry))  # not aliases
    for _, registry in found.values():
        registry.import_from_location()
    return {name: r for name, r in found.values()}


@pytest.fixture(scope='module')
def tiny():
    return build_tiny_model()


@pytest.fixture(scope='module')
def runner(tmp_path_factory):
    cfg = dict(type='MultiSourceDataset', sources=dict(recon=dict(
        type='ShapeScenes', num_scenes=4,
        pipeline=[dict(type='LoadImage'),
                  dict(type='ImageViews', und_size=64, gen_size=64)])))
    return Runner(
        model=build_tiny_model(), work_dir=str(tmp_path_factory.mktemp('r')),
        train_dataloader=dict(
            dataset=cfg, batch_size=2, sampler=dict(type='MultiSourceSampler'),
            batch_sampler=dict(type='MultiSourceBatchSampler'),
            collate_fn=dict(type='reca_toolkit.collate_by_source')),
        train_cfg=dict(type='ResumableIterBasedTrainLoop', max_iters=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_scope='reca_toolkit', experiment_name='registry_test')


def janus_parts(tiny):
    inner = tiny.umm.hf_model.model
    return dict(
        JanusSigLIPEncoder=dict(vision_model=inner.vision_model,
                                aligner=inner.aligner),
        JanusVQTokenizer=dict(vqmodel=inner.vqmodel),
        AutoregressiveCodeGenerator=dict(
            code_embeddings=inner.generation_embeddings,
            code_aligner=inner.generation_aligner,
            head=inner.generation_head))


def tiny_umm_cfg(name):
    from mmengine.config import Config
    from conftest import REPO
    return Config.fromfile(str(REPO / f'configs/_base_/models/{name}.py')
                           ).model.umm.to_dict()


def harmon_umm_cfg():
    return tiny_umm_cfg('harmon_tiny')


def harmon_parts(_):
    from diffusers import AutoencoderKL
    return dict(VAETokenizer=dict(vae=AutoencoderKL(
        **harmon_umm_cfg()['vae'])))


def shapes(**kw):
    return dict(type='ShapeScenes', num_scenes=4, **kw)


# registry -> type -> (config, default args or a callable giving them).
CASES = {
    'MODELS': {
        'RecAModel': (tiny_model_cfg(), {}),
        'JanusProUMM': (tiny_model_cfg()['umm'], {}),
        'RecADataPreprocessor': ({}, {}),
        'JanusSigLIPEncoder': ({}, janus_parts),
        'JanusVQTokenizer': ({}, janus_parts),
        'PatchLookupTokenizer': (dict(grid_size=4), {}),
        'AutoregressiveCodeGenerator': (dict(guidance_scale=3.0),
                                        janus_parts),
        'HarmonUMM': (harmon_umm_cfg(), {}),
        'BagelUMM': (tiny_umm_cfg('bagel_tiny'), {}),
        'VAETokenizer': (dict(scaling_factor=0.2325), harmon_parts),
        'MaskedAutoregressiveGenerator': (dict(
            encoder_dim=32, encoder_depth=1, encoder_heads=2, decoder_dim=32,
            decoder_depth=1, decoder_heads=2, buffer_size=2,
            pos_embed_grid=4, head=dict(width=32, depth=1)), {}),
        'FlowMatchingGenerator': (dict(timestep_sampling='logit_normal',
                                       shift=3.0), {}),
        'ShowoUMM': (tiny_umm_cfg('showo_tiny'), {}),
        'MAGVITv2Tokenizer': (dict(
            ch=32, encoder_ch_mult=(1, 2), encoder_num_res_blocks=(1, 1),
            decoder_ch_mult=(1, 2), decoder_num_res_blocks=(1, 1),
            z_channels=4), {}),
        'MaskGITGenerator': (dict(num_codes=64, annealing='maskgit'), {}),
        'ReconstructionAlignment': (dict(generic_prob=0.2), {}),
        'TextToImage': (dict(null_prob=0.0), {}),
        'ImageToText': (dict(weight=0.5), {}),
    },
    'TOKENIZERS': {
        'JanusDemoTokenizer': (dict(vocab_size=512), {}),
        'QwenDemoTokenizer': (dict(vocab_size=512), {}),
        'ShowoDemoTokenizer': (dict(vocab_size=512), {}),
        'BagelDemoTokenizer': (dict(vocab_size=512), {}),
        'HFTokenizer': (None, None),  # built from a saved folder below
    },
    'DATASETS': {
        'ShapeScenes': (dict(num_scenes=4), {}),
        'MultiSourceDataset': (dict(sources=dict(recon=shapes())), {}),
        'ImageFolder': (None, None),  # needs files: test_data.py
        'CaptionedImages': (None, None),  # needs files: test_data.py
        'SyntheticImages': (dict(num_samples=2, image_size=16), {}),
        'FeatureCache': (None, None),  # needs files: test_perf_cache.py
        'TarShards': (None, None),  # needs files: test_data_shards.py
        'ParquetImages': (None, None),  # needs files: test_data_shards.py
        'LocalHFDataset': (None, None),  # needs files: test_data_shards.py
        'GenEvalPrompts': ({}, {}),
        'GenEvalShapesPrompts': (dict(num_prompts=12), {}),
        'GenEvalShapesScenes': (dict(num_scenes=4, sparse=dict(
            color_drop=0.5)), {}),
        'HeldOutImages': (dict(source=shapes()), {}),
        'EvalSets': (dict(datasets=[
            dict(type='GenEvalShapesPrompts', num_prompts=6),
            dict(type='HeldOutImages', source=shapes())]), {}),
        'DPGPrompts': (None, None),  # needs files: test_eval_dpg.py
        'WISEPrompts': (None, None),  # needs the user's files
        'ImgEditSet': (None, None),  # needs the user's files
        'GEditSet': (None, None),  # needs the user's files
    },
    'DATA_SAMPLERS': {
        'MultiSourceSampler': (dict(ratios=dict(a=1, b=2), seed=0), lambda _:
                               dict(dataset=multi_source())),
        'MultiSourceBatchSampler': ({}, lambda _: dict(
            sampler=registries.DATA_SAMPLERS.build(dict(
                type='MultiSourceSampler', seed=0,
                dataset=multi_source())), batch_size=3)),
    },
    'TRANSFORMS': {
        'LoadImage': ({}, {}),
        'ImageViews': (dict(und_size=32, gen_size=64), {}),
        'AspectViews': (dict(gen=(1024, 512, 16)), {}),
    },
    'FUNCTIONS': {'collate_by_source': (None, None),
                  'transformer_layer_wrap_policy': (None, None),
                  # built by PatchLookupTokenizer: test_patch_tokenizer.py
                  'shape_patch_codebook': (None, None)},
    # Need a process group: test_fsdp.py.
    'STRATEGIES': {'RecAFSDPStrategy': (None, None)},
    'RUNNERS': {'RecAFlexibleRunner': (None, None)},
    'HOOKS': {
        'CheckpointHook': (dict(interval=5, by_epoch=False,
                                max_keep_ckpts=1), {}),
        'SampleGridHook': (dict(interval=5, prompts=['a red square']), {}),
        'HFExportHook': (dict(out_dir='export'), {}),
        'SkippedImagesHook': ({}, {}),
        'EvalSampleGridHook': (dict(num_images=4), {}),
        'BeforeAfterValHook': (dict(prefix='geneval_shapes/'), {}),
        'CollapseMonitorHook': (dict(patience=3, watch='understanding'), {}),
    },
    'LOOPS': {'ResumableIterBasedTrainLoop': (None, None)},
    'OPTIM_WRAPPER_CONSTRUCTORS': {
        'DecayGroupsOptimWrapperConstructor': (dict(optim_wrapper_cfg=dict(
            type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3,
                                                weight_decay=0.1))), {}),
    },
    'METRICS': {
        'ReconstructionMetric': ({}, {}),
        'DescriptionAccuracyMetric': (dict(source='describe'), {}),
        'GenEvalMetric': (dict(detector=dict(type='PaletteShapeDetector')),
                          {}),
        # Need prompt files or a judge: test_eval_dpg.py, test_eval_judges.py
        'DPGMetric': (None, None),
        'ImgEditMetric': (None, None),
        'GEditMetric': (None, None),
        'WISEMetric': (None, None),
    },
    'SCORERS': {
        'PaletteShapeDetector': ({}, {}),
        'PaletteColorClassifier': ({}, {}),
        'ExternalCommand': (dict(command=['true']), {}),
        'OpenAICompatibleJudge': (dict(model='gpt-4o-2024-05-13'), {}),
        'JudgeVQA': (dict(judge=dict(type='OpenAICompatibleJudge',
                                     model='m')), {}),
        'MMDetDetector': (dict(config='m2f.py', checkpoint='m2f.pth'), {}),
        'OpenCLIPColorClassifier': (dict(checkpoint='clip.safetensors'), {}),
        # Need feature-network weights: test_eval_reconstruction.py
        'LPIPS': (None, None),
        'TorchvisionFeatures': (None, None),
    },
}


# Registered functions that build an object of another class: what they
# build, and that the config reached it.
FACTORIES = {
    'JanusDemoTokenizer': (PreTrainedTokenizerBase,
                           lambda tokenizer: len(tokenizer) == 512),
    'QwenDemoTokenizer': (PreTrainedTokenizerBase,
                          lambda tokenizer: len(tokenizer) == 512 and
                          tokenizer.convert_tokens_to_ids('<|im_end|>') == 2),
    'ShowoDemoTokenizer': (PreTrainedTokenizerBase,
                           lambda tokenizer: len(tokenizer) == 512 and
                           tokenizer.convert_tokens_to_ids('<|endoftext|>')
                           == 0),
    'BagelDemoTokenizer': (PreTrainedTokenizerBase,
                           lambda tokenizer: len(tokenizer) == 512 and
                           tokenizer.convert_tokens_to_ids(
                               '<|vision_end|>') == 4),
}


def multi_source():
    return registries.DATASETS.build(dict(
        type='MultiSourceDataset', sources=dict(a=shapes(), b=shapes())))


def test_every_registered_component_has_a_build_case():
    for name, registry in scoped_registries().items():
        # projects/ register into the same registries when imported; the
        # toy's components (the main command's) are covered here too.
        registered = {k for k, v in registry.module_dict.items()
                      if v.__module__.startswith(('reca_toolkit',
                                                  'projects.janus_toy'))}
        covered = set(CASES.get(name, {}))
        assert registered == covered, (name, registered ^ covered)


@pytest.mark.parametrize('registry_name, type_name', [
    (r, t) for r, cases in CASES.items() for t, (cfg, _) in cases.items()
    if cfg is not None
])
def test_component_builds_from_config(registry_name, type_name, tiny):
    cfg, default_args = CASES[registry_name][type_name]
    if callable(default_args):
        default_args = default_args(tiny)
        default_args = default_args.get(type_name, default_args)
    registry = getattr(registries, registry_name)
    built = registry.build(dict(cfg, type=type_name),
                           default_args=default_args or None)
    if type_name in FACTORIES:
        expected, check = FACTORIES[type_name]
        assert isinstance(built, expected) and check(built)
    else:
        assert type(built).__name__ == type_name


def test_components_that_need_a_runner_or_files_build(runner, tmp_path,
                                                      tiny):
    loop = runner.build_train_loop(dict(type='ResumableIterBasedTrainLoop',
                                        max_iters=3))
    assert loop.max_iters == 3
    batch = registries.FUNCTIONS.get('collate_by_source')(
        [dict(source='a', x=torch.zeros(2), draw=1, skipped=0)])
    assert batch['inputs']['a']['x'].shape == (1, 2)
    tiny.umm.tokenizer.save_pretrained(tmp_path)
    tokenizer = registries.TOKENIZERS.build(dict(type='HFTokenizer',
                                                 path=str(tmp_path)))
    assert tokenizer.get_vocab() == tiny.umm.tokenizer.get_vocab()


def test_unknown_type_names_the_closest_choices():
    with pytest.raises(KeyError, match='Did you mean: JanusProUMM'):
        registries.MODELS.build(dict(type='JanusProUM'))
    with pytest.raises(KeyError, match='ResumableIterBasedTrainLoop'):
        registries.LOOPS.get('ResumableIterBasedTrainLop')
    with pytest.raises(KeyError, match='Valid names: .*LoadImage'):
        registries.TRANSFORMS.get('Zzzzzzzz')


def test_aliases_share_the_model_registry():
    assert registries.ENCODERS is registries.MODELS
    assert registries.GENERATORS is registries.MODELS
    assert registries.OBJECTIVES is registries.LOSSES is registries.MODELS
