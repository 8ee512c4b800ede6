"""The toy study's driver and probe (projects/toy_study)."""
import argparse
import json

import pytest
import torch
from mmengine.config import DictAction

from conftest import REPO
from projects.toy_study import probe, study
from reca_toolkit.engine.launch import load_config


def arm_config(toy, arm):
    config, options = study.arms(toy)[arm]
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parsed = parser.parse_args(['--cfg-options', *options] if options
                               else []).cfg_options
    return load_config(str(REPO / config), parsed, check_resources=False)


@pytest.mark.parametrize('toy, arm', [(toy, arm) for toy in study.TOYS
                                      for arm in sorted(study.arms(toy))])
def test_every_arm_sets_what_it_says(toy, arm):
    cfg = arm_config(toy, arm)
    assert cfg.model.umm.type == dict(janus='JanusProUMM',
                                      harmon='HarmonUMM')[toy]
    objectives = set(cfg.model.objectives)
    sources = cfg.train_dataloader.dataset.sources
    ratios = cfg.train_dataloader.sampler.ratios
    assert set(ratios) <= set(sources)
    # Every arm trains for the same steps at the same learning rate.
    assert cfg.train_cfg.max_iters == 1000
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    expected = {
        'reca': ({'recon', 'i2t'}, dict(recon=1, i2t=1)),
        'control': ({'t2i', 'i2t'}, dict(t2i=1, i2t=1)),
        'dense_captions': ({'t2i', 'i2t'}, dict(t2i=1, i2t=1)),
        'reca_replay': ({'recon', 't2i', 'i2t'}, dict(recon=1, t2i=1, i2t=1)),
        'control_replay': ({'t2i', 'i2t'}, dict(t2i=2, i2t=1)),
        'ratio3to1': ({'recon', 'i2t'}, dict(recon=3, i2t=1)),
        'ratio1to3': ({'recon', 'i2t'}, dict(recon=1, i2t=3)),
        'no_i2t': ({'recon', 'i2t'}, dict(recon=1, i2t=0)),
    }
    if arm in expected:
        assert (objectives, dict(ratios)) == expected[arm]
    if 'recon' in sources:
        # Harmon's understanding reads the 64 px generation view.
        und = sources.recon.pipeline[1].und_size
        assert und == (64 if toy == 'harmon' else
                       dict(und64=64, und16=16).get(arm, 32))
        generic = cfg.model.objectives.recon.get('generic_prob')
        assert generic == (1.0 if arm == 'pool1' else None)
    if 't2i' in sources:
        dense = arm == 'dense_captions'
        assert (sources.t2i.sparse is None) == dense
        assert sources.t2i.unnamed_held_out is not dense
    batch = cfg.train_dataloader.batch_size
    assert batch == (48 if arm.endswith('replay') else 32)


def write_result(out, arm, seed, value):
    folder = out / arm / f'seed_{seed}' / '20260101_000000'
    folder.mkdir(parents=True)
    scores = {f'geneval_shapes/{t}': value for t in study.TAGS}
    (folder / 'before_after.json').write_text(json.dumps(dict(
        before={k: 0.5 for k in scores}, after=scores)))


def test_table_gives_mean_and_t_interval_over_seeds(tmp_path):
    write_result(tmp_path, 'reca', 0, 0.5)
    write_result(tmp_path, 'reca', 1, 0.7)
    write_result(tmp_path, 'control', 0, 0.4)
    write_result(tmp_path, 'control', 1, 0.4)
    text = study.table(tmp_path, ['reca', 'control'], [0, 1])
    overall = [line for line in text.splitlines()
               if line.startswith('| overall')]
    # mean 0.6; half-width t(0.975, 1) * stdev / sqrt(2) = 12.706 * 0.1
    assert overall[0] == ('| overall | 0.500 ± 0.000 | 0.600 ± 1.271 | '
                          '0.400 ± 0.000 |')
    # Paired: RecA against its control (0.1 and 0.3), the control against
    # the pretrained model it started from.
    assert '| reca − control | control − baseline |' in text
    assert overall[1] == '| overall | +0.200 ± 1.271 | -0.100 ± 0.000 |'


def test_table_adds_the_shifted_prompt_score_and_what_reading_is_worth(
        tmp_path):
    def scores(value):
        return json.dumps({f'geneval_shapes/{t}': value for t in study.TAGS})

    for arm, seed, value, blind in (('reca', 0, 0.5, 0.4),
                                    ('reca', 1, 0.7, 0.4),
                                    ('control', 0, 0.4, 0.4),
                                    ('control', 1, 0.4, 0.2)):
        write_result(tmp_path, arm, seed, value)
        (tmp_path / arm / f'seed_{seed}' / 'geneval_shifted.json'
         ).write_text(scores(blind))
    for seed in (0, 1):
        (tmp_path / f'geneval_shifted_before_seed_{seed}.json').write_text(
            scores(0.3))
    text = study.table(tmp_path, ['reca', 'control'], [0, 1])
    overall = [line for line in text.splitlines()
               if line.startswith('| overall')]
    assert len(overall) == 6  # GenEval, shifted, their difference; paired
    assert overall[2] == ('| overall | 0.300 ± 0.000 | 0.400 ± 0.000 | '
                          '0.300 ± 1.271 |')
    # Reading the prompt: baseline 0.5 - 0.3; reca 0.1, 0.3; control 0, 0.2.
    assert overall[4] == ('| overall | 0.200 ± 0.000 | 0.200 ± 1.271 | '
                          '0.100 ± 1.271 |')
    assert overall[5] == '| overall | +0.100 ± 0.000 | -0.100 ± 1.271 |'


@pytest.mark.parametrize('name, keys, title', [
    ('understanding', study.UNDERSTANDING_KEYS, 'Description accuracy'),
    ('probe', ('text (held-out)', 'image wins (train)'), 'The probe')])
def test_table_adds_scores_before_and_after(tmp_path, name, keys, title):
    for arm, seed, value in (('reca', 0, 0.2), ('reca', 1, 0.4),
                             ('control', 0, 0.6), ('control', 1, 0.6)):
        write_result(tmp_path, arm, seed, 0.5)
        (tmp_path / arm / f'seed_{seed}' / f'{name}.json').write_text(
            json.dumps({k: value for k in keys}))
    text = study.table(tmp_path, ['reca', 'control'], [0, 1])
    assert title not in text  # no "before" yet
    (tmp_path / f'{name}_before.json').write_text(
        json.dumps({k: 0.7 for k in keys}))
    text = study.table(tmp_path, ['reca', 'control'], [0, 1])
    assert title in text
    lines = [line for line in text.splitlines()
             if line.startswith(f'| {keys[0]} |')]
    assert lines[0] == (f'| {keys[0]} | 0.700 ± 0.000 | 0.300 ± 1.271 | '
                        '0.600 ± 0.000 |')
    assert lines[1] == f'| {keys[0]} | -0.300 ± 1.271 | -0.100 ± 0.000 |'


def test_probe_shows_the_pretrained_model_reads_its_prompt():
    from reca_toolkit.engine.inference import load_model
    model, cfg = load_model(str(REPO / 'configs/reca/janus_toy.py'))
    assert probe.views_of(cfg) == (32, 64)
    captions, und, gen, kinds = probe.scene_batch(48, und_size=32)
    assert und.shape[-1] == 32 and gen.shape[-1] == 64
    assert ((kinds >= 0).sum(1) >= 1).all() and (kinds == 1).any()
    result = probe.probe(model.umm, captions, und, gen, kinds, None)
    assert set(result) == {(c, p) for c in probe.CONDITIONS
                           for p in ('train', 'held-out')}
    # Pretrained on captions only: it draws the object a caption names far
    # more often than the object another scene's caption names.
    assert result[('text', 'train')] > result[('text wrong', 'train')] + 0.2


def test_study_probes_with_the_arms_understanding_view(monkeypatch):
    monkeypatch.setattr(study, 'PROBE_SCENES', 32)
    results = {arm: study.probed(*study.probe_setting('janus', arm))
               for arm in ('reca', 'und64', 'control')}
    assert set(results['reca']) == {f'{c} ({p})' for c in probe.CONDITIONS
                                    for p in ('train', 'held-out')}
    # The pretrained Janus toy reads images at its 32 px view, not at 64.
    assert results['reca']['image (train)'] > \
        results['und64']['image (train)'] + 0.3
    assert results['reca']['text (train)'] == results['und64']['text (train)']
    # A control is probed at its toy's RecA view.
    assert results['control'] == results['reca']
    control = load_config(str(REPO / study.TOYS['janus']['control']),
                          check_resources=False)
    with pytest.raises(ValueError, match='control.py has no reconstruction '
                       "source .*probe with the toy's RecA config"):
        probe.views_of(control)


def test_mar_probe_scores_each_slots_true_latent_by_hand():
    from reca_toolkit.engine.inference import load_model
    model, cfg = load_model(str(REPO / 'projects/harmon_toy/configs/reca.py'))
    umm = model.umm
    assert probe.views_of(cfg) == (64, 64)
    captions, und, gen, kinds = probe.scene_batch(6, und_size=64)
    score = probe.scorer_for(umm, gen)
    assert score.metric == 'loss'
    assert score.timesteps[0, 0].tolist() == list(range(50, 1000, 100))
    condition = umm.text_condition(captions[2:4])
    losses = score(condition, slice(2, 4))
    assert losses.shape == (2, 16)
    # Every token masked: the encoder sees the buffer alone.
    tokens = umm.gen_tokenizer.to_tokens(umm.gen_tokenizer.encode(gen[2:4]))
    mask = torch.ones(2, 16, dtype=torch.bool)
    buffer = umm.mar.encode(tokens, mask, (4, 4))
    assert buffer.shape[1] == umm.mar.buffer_size
    middle = umm.generation_middle(condition)
    z = umm.mar.decode(middle(buffer, torch.ones(2, 4, dtype=torch.bool)),
                       mask, (4, 4))
    row, slot = 1, 5
    by_hand = umm.mar.diffloss.loss(
        tokens[row, slot].expand(10, -1), z[row, slot].expand(10, -1),
        score.timesteps[2 + row, slot], score.noise[2 + row, slot])
    assert losses[row, slot].item() == pytest.approx(by_hand.mean().item(),
                                                     rel=1e-5)

    result = probe.probe(umm, captions, und, gen, kinds, None)
    wins = [('text wins', 'train'), ('image wins', 'held-out')]
    assert set(wins) < set(result)
    assert all(0 <= result[key] <= 1 for key in wins)


def test_probe_names_the_generators_it_scores():
    model = torch.nn.Module()
    model.generator = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match='no probe for a Linear generator; '
                       "probed: .*'MaskedAutoregressiveGenerator'"):
        probe.scorer_for(model, None)


def test_shifted_prompts_cost_a_model_that_reads_them():
    options = [f'{study.PROMPTS}.num_prompts=30']
    janus = study.TOYS['janus']['reca']
    own = study.geneval(janus, None, 0, options)
    shifted = study.geneval(janus, None, 0, options + [study.SHIFTED])
    assert shifted['geneval_shapes/overall'] < \
        own['geneval_shapes/overall'] - 0.2


def test_batched_geneval_is_the_validation_metric_and_deterministic():
    options = [f'{study.PROMPTS}.num_prompts=6']
    first = study.geneval(study.TOYS['harmon']['reca'], None, 0, options)
    again = study.geneval(study.TOYS['harmon']['reca'], None, 0, options)
    assert first == again
    assert {f'geneval_shapes/{t}' for t in study.TAGS} <= set(first)
    assert all(0 <= first[f'geneval_shapes/{t}'] <= 1 for t in study.TAGS)
