"""tools/benchmark.py and tools/analysis_tools/estimate.py on CPU, and the
meta-device accounting they rest on. No test asserts a speed: the measured
step times are only held to the tool's own wall time, and everything derived
from them to FLOPs and tokens counted here on a real step."""
import copy
import json
import math
import resource
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import REPO, tiny_model_cfg
from reca_toolkit.engine.launch import load_config
from reca_toolkit.engine.memory_estimate import estimate_memory
from reca_toolkit.engine.meta_pass import SavedTensors, meta_training_step
from reca_toolkit.engine.synthetic_data import synthetic_batches
from reca_toolkit.models.weightless import build_weightless
from reca_toolkit.registry import MODELS
from test_train_e2e import run_tool

DEMO = 'configs/reca/janus_pro_demo.py'
RECA_CONFIGS = sorted(p.name for p in (REPO / 'configs/reca').glob('*.py'))
# Parameters of the published Janus-Pro-1B and -7B checkpoints, which their
# transformers-format configs (models/umm/janus_architectures.py) rebuild.
PARAMS = {'janus_pro': 2_076_636_811, 'janus_pro_7b': 7_407_800_000}
# Harmon, built from HARMON_ARCHITECTURES without its folder: Qwen2.5
# (published count) + MAR + projections + KL-16, each part checked against
# its hand sum in tests/test_harmon_sizing.py.
PARAMS.update(harmon_0_5b=770_417_779, harmon_1_5b=2_559_228_915)
ONE_PER_FAMILY = ('janus_pro.py', 'harmon_0_5b.py', 'showo_512.py',
                  'bagel.py')


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp('bench') / 'demo.json'
    start = time.perf_counter()
    run_tool('tools/benchmark.py', DEMO, '--iters', 2, '--warmup', 1,
             '--compare', '--peak-tflops', 0.5, '--loader-batches', 2,
             '--json', out)
    wall = time.perf_counter() - start
    # The largest resident set of any child so far, this one included.
    child_rss_gib = resource.getrusage(
        resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return json.loads(out.read_text()), wall, child_rss_gib


def real_step_counts(batches):
    """FLOPs of a real CPU training step on ``batches[0]`` (eager
    attention), and the LLM positions of each batch's forward, counted
    here rather than by the benchmark's meta pass and hook."""
    model_cfg = tiny_model_cfg()
    model_cfg['umm']['attn_implementation'] = 'eager'
    model = MODELS.build(model_cfg)
    positions = []
    model.umm.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: positions.append(
            kwargs['inputs_embeds'].shape[:2].numel()), with_kwargs=True)
    sums = []
    for i, batch in enumerate(batches):
        data = model.data_preprocessor(copy.deepcopy(batch), training=True)
        with FlopCounterMode(display=False) as flops:
            loss, _ = model.parse_losses(model(**data, mode='loss'))
            if i == 0:
                loss.backward()
        sums.append(sum(positions))
        positions.clear()
        if i == 0:
            step_flops = flops.get_total_flops()
    return step_flops, sums


def test_benchmark_reports_throughput_and_baseline(bench):
    bench, wall, child_rss_gib = bench
    assert bench['config'] == DEMO and bench['batch_size'] == 8
    cfg = load_config(str(REPO / DEMO), check_resources=False)
    batches = synthetic_batches(cfg, 3, 8)  # the tool's: 1 warm-up, 2 timed
    flops, positions = real_step_counts(batches)
    # The memory-efficient attention the count assumes recomputes the
    # scores in its backward, which eager attention does not: +2.6% here.
    counted = bench['model_tflop_per_step'] * 1e12
    assert flops <= counted < 1.05 * flops
    assert bench['model_tflop_per_sample'] == pytest.approx(counted / 8e12)
    timed = sum(positions[1:]) / 2
    for run in (bench['optimised'], bench['baseline']):
        step = run['step_time_s']
        assert run['llm_tokens_per_step'] == timed
        assert run['samples_per_s'] == pytest.approx(8 / step)
        assert run['tokens_per_s'] == pytest.approx(timed / step)
        assert flops <= run['mfu'] * 0.5e12 * step < 1.05 * flops
        assert 0.1 < run['peak_memory_gib'] <= child_rss_gib
        assert len(run['losses']) == 3
        assert all(map(math.isfinite, run['losses']))
    # Both runs start from the same weights: the naive switches change
    # kernels, not the model, so the first losses agree.
    assert bench['optimised']['losses'][0] == pytest.approx(
        bench['baseline']['losses'][0], rel=1e-4)
    # Two timed steps of each run fit in the tool's wall time.
    assert 2 * (bench['optimised']['step_time_s'] +
                bench['baseline']['step_time_s']) < wall
    assert bench['speedup_vs_baseline'] == pytest.approx(
        bench['baseline']['step_time_s'] / bench['optimised']['step_time_s'])
    loader = bench['loader']
    assert (loader['batches'], loader['num_workers']) == (2, 0)
    assert loader['ratio_to_step_consumption'] == pytest.approx(
        loader['samples_per_s'] / bench['optimised']['samples_per_s'])


def test_benchmark_meta_init_needs_no_weights(tmp_path):
    out = tmp_path / 'meta.json'
    run_tool('tools/benchmark.py', DEMO, '--iters', 1, '--warmup', 1,
             '--meta-init', '--loader-batches', 1, '--json', out)
    result = json.loads(out.read_text())
    assert result['meta_init'] and result['optimised']['mfu'] is None
    assert 'baseline' not in result


@pytest.mark.parametrize('name', RECA_CONFIGS)
def test_estimate_every_reca_config_without_weights(name):
    if 'lora' in name:
        pytest.importorskip('peft')
    cfg = load_config(str(REPO / 'configs/reca' / name),
                      check_resources=False)
    estimate = estimate_memory(cfg, batch_size=2)
    stem = Path(name).stem
    if stem in PARAMS:
        total = estimate['trainable_params'] + estimate['frozen_params']
        assert total == pytest.approx(PARAMS[stem], rel=1e-4)
    # The parts the config freezes train nothing; every other part trains
    # (LoRA: adapters on the frozen LLM).
    frozen = set(cfg.model.umm.frozen)
    for part, trainable, _, _ in estimate['parts']:
        assert (trainable == 0) == (part in frozen), part
    # Each part's row counts its own parameters; the total counts a
    # parameter two parts share (Harmon's lm_head is its tied embedding
    # table) once, so it equals the rows' sum only without sharing.
    rows = [row[1] for row in estimate['parts']]
    tied = cfg.model.umm.type == 'HarmonUMM'
    assert estimate['trainable_params'] == sum(rows) or (
        tied and max(rows) <= estimate['trainable_params'] < sum(rows))
    # float32 trainable weights: float32 gradients, and two float32 AdamW
    # moments, for the trainable parameters only.
    gib = estimate['gib']
    assert gib['gradients'] == pytest.approx(
        4 * estimate['trainable_params'] / 2**30)
    assert gib['optimizer'] == pytest.approx(2 * gib['gradients'])
    # Activations grow with the batch, about linearly (checked on one
    # real-size config per family: a second meta step each).
    if name in ONE_PER_FAMILY:
        doubled = estimate_memory(cfg, batch_size=4)['gib']['activations']
        assert 1.9 < doubled / gib['activations'] < 2.2
    assert estimate['total_gib'] == pytest.approx(sum(gib.values()))


def test_estimate_cli_says_whether_it_fits(tmp_path):
    out = run_tool('tools/analysis_tools/estimate.py', DEMO, '--gpu-mem',
                   0.001, '--json', tmp_path / 'e.json').stdout
    assert 'does NOT fit in 0.001 GiB' in out
    assert not json.loads((tmp_path / 'e.json').read_text())['fits']


def tiny_batch(batch_size=2):
    cfg = load_config(str(REPO / DEMO), check_resources=False)
    return synthetic_batches(cfg, 1, batch_size)[0]


def assert_meta_step_counts_the_real_step(model_cfg, batch,
                                          prepare=lambda model: model):
    """The meta pass of ``model_cfg`` (after ``prepare``, e.g. eager
    attention) saves the bytes and counts the FLOPs that the same hooks
    find on a real CPU step of the same batch."""
    meta = meta_training_step(prepare(build_weightless(copy.deepcopy(
        model_cfg))), copy.deepcopy(batch))
    torch.manual_seed(0)
    model = prepare(MODELS.build(model_cfg))
    data = model.data_preprocessor(batch, training=True)
    saved = SavedTensors(model)
    with FlopCounterMode(display=False) as flops:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack,
                                                      lambda t: t):
            loss, _ = model.parse_losses(model(**data, mode='loss'))
        real_saved = saved.total_bytes
        loss.backward()
    assert meta['saved_bytes'] == real_saved
    assert meta['flops'] == flops.get_total_flops()


def test_meta_step_counts_what_a_real_step_saves_and_computes():
    """The meta accounting (eager attention: the same kernels on both
    devices) against the same hooks on a real CPU step."""
    model_cfg = tiny_model_cfg()
    model_cfg['umm']['attn_implementation'] = 'eager'
    assert_meta_step_counts_the_real_step(model_cfg, tiny_batch())


def test_janus_pro_1b_flops_match_the_research_measurement():
    """10.48 TFLOP per 384 px RecA sample of 1191 tokens (8 prefix, 576
    SigLIP, 32 prompt, 575 code inputs), counted independently of this code
    with FlopCounterMode over the transformers model (docs/performance.md);
    prompts here are a few tokens shorter."""
    from reca_toolkit.engine.benchmark import model_flops
    cfg = load_config(str(REPO / 'configs/reca/janus_pro.py'),
                      check_resources=False)
    counted = model_flops(cfg.model.to_dict(), synthetic_batches(cfg, 1, 1)[0])
    assert 10.2e12 < counted['flops'] < 10.7e12
    assert 1150 < counted['llm_tokens'] < 1200


def test_weightless_build_reads_a_present_weights_folder(tmp_path):
    """With the folder present, its config.json (and tokenizer) give the
    architecture, not the table of published ones."""
    model = MODELS.build(tiny_model_cfg())
    model.umm.save_pretrained(tmp_path / 'Janus-Tiny')
    cfg = tiny_model_cfg()
    cfg['umm'] = dict(type='JanusProUMM', pretrained=str(tmp_path /
                                                         'Janus-Tiny'))
    weightless = build_weightless(cfg)
    assert all(p.is_meta for p in weightless.parameters())
    assert {n: p.shape for n, p in weightless.named_parameters()} == \
        {n: p.shape for n, p in model.named_parameters()}


def test_unknown_architecture_without_weights_is_named():
    cfg = tiny_model_cfg()
    cfg['umm'] = dict(type='JanusProUMM', pretrained='/nowhere/My-Janus')
    with pytest.raises(FileNotFoundError, match="'My-Janus' is not a known"):
        build_weightless(cfg)


def test_meta_values_keep_what_derives_from_constants_and_the_batch():
    """MetaValues: values read on meta where they derive from constants or
    real tensors, none where they derive from a weight; FLOPs counted."""
    from reca_toolkit.engine.meta_pass import MetaValues
    weight = torch.empty(4, 3, device='meta')
    with MetaValues() as mode:
        mask = torch.tensor([True, False, True, True]).to('meta')
        count = int(mask.sum())  # .item() on meta
        rows = weight[mask]  # boolean indexing of a value-less tensor
        zeros = weight.new_zeros(4)  # only the shape comes from the weight
        assert int((zeros == 0).sum()) == 4
        derived = weight.sum(1)
        with pytest.raises(RuntimeError, match='meta'):
            int(derived.sum())
        zeros.add_(derived)  # an in-place update it cannot follow
        product = weight @ torch.empty(3, 5, device='meta')
    assert count == 3 and rows.shape == (3, 3) and rows.is_meta
    assert mode.value(zeros) is None and mode.value(derived) is None
    assert product.is_meta and mode.flops == 2 * 4 * 3 * 5
