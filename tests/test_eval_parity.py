"""Parity with the official scorers on the minimal cases where a port can
differ: djghosh13/geneval ``evaluation/evaluate_images.py`` and
TencentQQGYLab/ELLA ``dpg_bench/compute_dpg_bench.py`` (docs/evaluation.md,
"Parity")."""
import csv
import sys

import numpy as np
import pytest
import torch

from reca_toolkit.evaluation import DPGMetric
from reca_toolkit.evaluation.metrics.dpg import read_question_graph
from reca_toolkit.evaluation.metrics.geneval import (evaluate,
                                                     keep_detections,
                                                     relative_position)
from reca_toolkit.evaluation.scorers import Detection

PURPLE_CUP = dict(tag='colors', prompt='a photo of a purple cup',
                  include=[{'class': 'cup', 'count': 1, 'color': 'purple'}])


def cups(*scored_colors):
    """Cups side by side, listed in the order given; ``color`` is what the
    colour classifier below answers."""
    dets = []
    for i, (score, color) in enumerate(scored_colors):
        d = Detection('cup', score, (20 * i, 0, 20 * i + 10, 10))
        d.color = color
        dets.append(d)
    return dets


def colors_of(found, classname):
    return [d.color for d in found]


# -- GenEval ------------------------------------------------------------------
def test_geneval_tied_scores_put_the_last_listed_detection_first():
    # official: argsort([1, 1])[::-1] = [1, 0] -> the purple cup is the top
    # one and the prompt is met (a stable sort would pick the green one)
    dets = cups((1.0, 'green'), (1.0, 'purple'))
    ok, reason = evaluate(keep_detections(dets, 0.3), PURPLE_CUP, colors_of)
    assert ok, reason
    ok, reason = evaluate(keep_detections(dets[::-1], 0.3), PURPLE_CUP,
                          colors_of)
    assert not ok and reason.startswith('expected purple cup>=1, found 0 '
                                        'purple')


def test_geneval_order_is_numpys_argsort_reversed():
    scores = [1.0, 0.5, 1.0, 1.0, 0.5, 0.9]
    dets = cups(*[(s, 'red') for s in scores])
    kept = keep_detections(dets, 0.3)['cup']
    order = np.argsort(np.array(scores, np.float32))[::-1]
    assert [dets.index(d) for d in kept] == order.tolist()


def test_geneval_threshold_compares_in_float32():
    at = float(np.float32(0.3))  # 0.30000001192..., above the float 0.3
    above = float(np.nextafter(np.float32(0.3), np.float32(1)))
    kept = keep_detections(cups((at, 'red'), (above, 'red')), 0.3)
    assert [d.score for d in kept['cup']] == [above]
    # float64 scores are float32 once they reach the official comparison
    assert keep_detections(cups((0.3 + 1e-9, 'red')), 0.3) == {}


def test_geneval_position_rounds_in_float32():
    # dx is 0.5 + 2e-8 in float64 but not above 0.5 in float32 (mmdet's
    # boxes): upstream finds "below" only
    box_a = (91.71177673339844, 156.19090270996094, 97.45552062988281,
             197.78805541992188)
    box_b = (0.0, 0.0, 5.743743419647217, 41.59716033935547)
    assert relative_position(box_a, box_b) == {'below'}


# -- DPG-Bench ----------------------------------------------------------------
HEADER = ['item_id', 'text', 'keywords', 'proposition_id', 'dependency',
          'category_broad', 'category_detailed', 'tuple',
          'question_natural_language']


def write_csv(path, rows):
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for item, qid, dep, tup, question in rows:
            writer.writerow([item, 'text', '', qid, dep, '', '', tup,
                             question])
    return path


class DarkTileVQA:
    """Says yes about dark tiles and no about bright ones."""

    def __call__(self, image, question):
        return 'yes' if np.asarray(image).mean() < 128 else 'no'


def dpg_sample(key, *bright):
    """Four 8 px images (a 2 x 2 grid), bright (255) where asked."""
    pred = torch.full((4, 3, 8, 8), -1.0)
    for i in bright:
        pred[i] = 1.0
    return dict(key=key, pred=pred)


@pytest.fixture
def one_question(tmp_path):
    return write_csv(tmp_path / 'dpg.csv', [
        ('a', 1, '0', 'entity - whole (cat)', 'Is there a cat?')])


def test_dpg_grid_categories_come_from_the_last_tile(one_question):
    # answers yes, yes, yes, no: DPG 75 either way; categories 0 upstream
    official = DPGMetric(one_question, vqa=DarkTileVQA(),
                         skip_first_question=False)
    official.process(None, [dpg_sample('a', 3)])
    scores = official.evaluate(1)
    assert scores['dpg/dpg'] == 75.0
    assert scores['dpg/entity'] == 0.0
    assert scores['dpg/L2/entity - whole'] == 0.0
    averaged = DPGMetric(one_question, vqa=DarkTileVQA(),
                         skip_first_question=False,
                         average_tile_categories=True)
    averaged.process(None, [dpg_sample('a', 3)])
    scores = averaged.evaluate(1)
    assert scores['dpg/dpg'] == 75.0
    assert scores['dpg/entity'] == scores['dpg/L2/entity - whole'] == 75.0
    assert averaged.card_info()['average_tile_categories'] is True


def test_dpg_separate_layout_scores_each_file_as_recas_script(one_question,
                                                              tmp_path):
    metric = DPGMetric(one_question, vqa=DarkTileVQA(), layout='separate',
                       out_dir=str(tmp_path / 'out'),
                       skip_first_question=False)
    metric.process(None, [dpg_sample('a', 3)])
    scores = metric.evaluate(1)
    # each file's own answers count: 3 of 4 files have a cat
    assert scores['dpg/dpg'] == scores['dpg/entity'] == 75.0
    assert sorted(p.name for p in (tmp_path / 'out/images').iterdir()) == \
        [f'a_{i}.png' for i in range(4)]
    assert metric.card_info()['layout'] == 'separate'
    with pytest.raises(ValueError, match='native scoring of'):
        DPGMetric(one_question, vqa=DarkTileVQA(), layout='separate',
                  average_tile_categories=True)


def test_dpg_reports_second_level_categories(tmp_path):
    path = write_csv(tmp_path / 'dpg.csv', [
        ('a', 1, '0', 'entity - whole (cat)', 'q1'),
        ('a', 2, '1', 'attribute - color (cat, black)', 'q2'),
        ('a', 3, '1', 'attribute - texture (cat, fluffy)', 'q3')])

    class NoToColor:
        def __call__(self, image, question):
            return 'no' if question == 'q2' else 'yes'

    metric = DPGMetric(path, vqa=NoToColor(), skip_first_question=False)
    metric.process(None, [dpg_sample('a')])
    assert metric.evaluate(1) == {
        'dpg/dpg': pytest.approx(200 / 3), 'dpg/attribute': 50.0,
        'dpg/entity': 100.0, 'dpg/L2/attribute - color': 0.0,
        'dpg/L2/attribute - texture': 100.0, 'dpg/L2/entity - whole': 100.0}


def test_dpg_skip_first_question_skips_a_prompt_that_lost_a_parent(
        tmp_path):
    # partiprompts97: the CSV's first row is a parent; upstream's zeroing
    # fails on it (KeyError), and its try/except skips that image file
    path = write_csv(tmp_path / 'dpg.csv', [
        ('partiprompts97', 1, '0', 'entity - whole (cat)', 'Is there a cat?'),
        ('partiprompts97', 2, '1', 'attribute - color (cat, black)',
         'Is the cat black?'),
        ('b', 1, '0', 'entity - whole (dog)', 'Is there a dog?'),
        ('b', 2, '1', 'relation - spatial (dog, sofa, on)', 'On a sofa?')])
    metric = DPGMetric(path, vqa=DarkTileVQA())  # skips by default
    metric.process(None, [dpg_sample('partiprompts97'), dpg_sample('b', 0)])
    scores = metric.evaluate(2)
    # only b counts: tiles 1-3 score 1, tile 0 scores 0 -> 75
    assert scores['dpg/dpg'] == 75.0
    assert scores['dpg/relation'] == 100.0  # b's last tile
    assert metric.card_info()['skipped_files'] == [
        'partiprompts97.png: question 2 depends on question 1, which this '
        'prompt lacks']


def test_dpg_question_graph_is_read_as_prepare_dpg_data(tmp_path):
    path = write_csv(tmp_path / 'dpg.csv', [
        ('a', 1, '0', 'entity - whole (cat)', 'old q1'),
        ('a', 1, '0', 'entity - whole (cat)', 'new q1'),
        ('b', 1, '0', 'entity - whole (dog)', 'q1'),
        ('a', 2, '0', 'entity - whole (sofa)', 'q2')])
    graph = read_question_graph(path)
    # a repeated qid replaces the earlier; a resumed item starts afresh
    assert graph['a'] == [(2, [0], 'entity - whole', 'q2')]
    assert [q[3] for q in graph['b']] == ['q1']
    only = write_csv(tmp_path / 'only.csv', [
        ('a', 1, '0', 'entity - whole (cat)', 'q1'),
        ('b', 1, '0', 'entity - whole (dog)', 'q1')])
    assert read_question_graph(only, skip_first_question=True)['a'] == []
    # a prompt left without questions is skipped, as upstream's lookup of
    # a missing key fails inside its try
    metric = DPGMetric(only, vqa=DarkTileVQA())
    metric.process(None, [dpg_sample('a'), dpg_sample('b')])
    assert metric.evaluate(2)['dpg/dpg'] == 100.0
    assert metric.card_info()['skipped_files'] == [
        'a.png: no questions left after skip_first_question']


RESULTS_SCRIPT = '''
import os, sys
image_dir, results_file, score = sys.argv[1:]
names = sorted(os.listdir(image_dir))
with open(results_file, 'w') as f:
    f.write(f"files {names}\\nL1 category scores:\\n\\tentity: 50.0\\n"
            f"L2 category scores:\\n\\tentity - whole: 50.0\\n"
            f"DPG-Bench score: {score}\\n")
'''


@pytest.mark.parametrize('layout, script, bad_key', [
    ('grid', "ELLA's", 'a.b'), ('separate', "the RecA authors' modified",
                                'a_b')])
def test_dpg_external_scorer_reads_either_layout(tmp_path, layout, script,
                                                 bad_key):
    questions = write_csv(tmp_path / 'dpg.csv', [
        (key, 1, '0', 'entity - whole (cat)', 'Is there a cat?')
        for key in ('a', bad_key)])
    (tmp_path / 'score.py').write_text(RESULTS_SCRIPT)

    def metric(score, key='a'):
        m = DPGMetric(questions, out_dir=str(tmp_path / score),
                      layout=layout, skip_first_question=False,
                      external_command=dict(
                          type='ExternalCommand', command=[
                              sys.executable, str(tmp_path / 'score.py'),
                              '{image_dir}', '{results_file}', score]))
        m.process(None, [dpg_sample(key)])
        return m

    assert metric('62.5').evaluate(1) == {
        'dpg/dpg': 62.5, 'dpg/entity': 50.0, 'dpg/L2/entity - whole': 50.0}
    # e.g. ELLA's script on separate files finds no questions: all skipped
    with pytest.raises(ValueError, match=f'needs {script} compute_dpg'):
        metric('nan').evaluate(1)
    # the official scripts take the key from the file name
    with pytest.raises(ValueError, match='would not find its questions'):
        metric('1', key=bad_key)
