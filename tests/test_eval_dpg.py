"""DPG-Bench: the question graph, parent-failure zeroing, both layouts."""
import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from reca_toolkit.datasets import DPGPrompts
from reca_toolkit.evaluation import DPGMetric
from reca_toolkit.evaluation.metrics.dpg import (read_dpg_results,
                                                 read_question_graph,
                                                 score_answers)

ROWS = [
    # item, qid, dependency, tuple, question
    ('a', 1, '0', 'entity - whole (cat)', 'Is there a cat?'),
    ('a', 2, '1', 'attribute - color (cat, black)', 'Is the cat black?'),
    ('a', 3, '2', 'attribute - texture (cat, fluffy)',
     'Is the black cat fluffy?'),
    ('a', 4, '0', 'global - (photo)', 'Is this a photo?'),
    ('b', 1, '0', 'entity - whole (dog)', 'Is there a dog?'),
    ('b', 2, '1', 'relation - spatial (dog, sofa, on)', 'Is the dog on a '
     'sofa?'),
]


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / 'dpg_bench.csv'
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['item_id', 'text', 'keywords', 'proposition_id',
                         'dependency', 'category_broad', 'category_detailed',
                         'tuple', 'question_natural_language'])
        for item, qid, dep, tup, question in ROWS:
            writer.writerow([item, 'text', '', qid, dep, '', '', tup,
                             question])
    return path


def test_question_graph_and_upstream_first_row_skip(csv_file):
    graph = read_question_graph(csv_file)
    assert [q[0] for q in graph['a']] == [1, 2, 3, 4]
    assert graph['a'][1][1:3] == ([1], 'attribute - color')
    skipped = read_question_graph(csv_file, skip_first_question=True)
    assert [q[0] for q in skipped['a']] == [2, 3, 4]
    assert skipped['b'] == graph['b']


def test_a_failed_parent_zeroes_its_descendants(csv_file):
    questions = read_question_graph(csv_file)['a']
    # cat missing: "black" and "fluffy" are zeroed although answered yes
    score, raw = score_answers(questions, {1: 'no', 2: 'yes', 3: 'yes',
                                           4: 'yes'})
    assert score == pytest.approx(1 / 4)
    assert raw == {1: 0.0, 2: 1.0, 3: 1.0, 4: 1.0}
    # only "black" fails: "fluffy" goes with it, the rest stands
    score, _ = score_answers(questions, {1: 'yes', 2: 'no', 3: 'yes',
                                         4: 'yes'})
    assert score == pytest.approx(2 / 4)
    # only the exact answer "yes" counts
    score, _ = score_answers(questions, {1: 'Yes', 2: 'yes', 3: 'yes',
                                         4: 'yes.'})
    assert score == 0.0


class QuestionVQA:
    """Says yes unless the question names an absent thing."""

    def __init__(self, absent=()):
        self.absent = absent
        self.sizes = []

    def __call__(self, image, question):
        self.sizes.append(image.size)
        return 'no' if any(a in question for a in self.absent) else 'yes'


def run(metric, prompts):
    for i in range(len(prompts)):
        sample = prompts[i]
        sample['pred'] = torch.zeros(sample['num_images'], 3, 32, 32)
        metric.process(None, [sample])
    return metric.evaluate(len(prompts))


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / 'prompts.json'
    path.write_text('{"b": "a dog on a sofa", "a": "a black fluffy cat"}')
    return DPGPrompts(path, num_images=4)


def test_grid_layout_scores_each_tile(csv_file, prompts, tmp_path):
    vqa = QuestionVQA(absent=('cat black',))
    metric = DPGMetric(csv_file, vqa=vqa, out_dir=str(tmp_path / 'grid'),
                       skip_first_question=False)
    scores = run(metric, prompts)
    # a: 1, 0, 0 (zeroed), 1 -> 0.5; b: 1 -> mean 0.75
    assert scores['dpg/dpg'] == pytest.approx(75.0)
    # categories use the answers before zeroing: fluffy counts as yes
    assert scores['dpg/attribute'] == pytest.approx(50.0)
    assert scores['dpg/entity'] == scores['dpg/relation'] == 100.0
    assert Image.open(tmp_path / 'grid' / 'images' / 'a.png').size == \
        (64, 64)
    assert set(vqa.sizes) == {(32, 32)} and len(vqa.sizes) == 4 * 6


def test_separate_layout_writes_one_file_per_image(csv_file, prompts,
                                                   tmp_path):
    metric = DPGMetric(csv_file, vqa=QuestionVQA(), out_dir=str(tmp_path),
                       layout='separate', skip_first_question=False)
    assert run(metric, prompts)['dpg/dpg'] == 100.0
    assert sorted(p.name for p in (tmp_path / 'images').iterdir()) == \
        [f'{k}_{i}.png' for k in 'ab' for i in range(4)]


def test_recas_prompts_json_keys_lose_their_txt(tmp_path):
    """RecA's prompts.json keys are ELLA's file names; the CSV and the
    authors' image names use the stem."""
    path = tmp_path / 'prompts.json'
    path.write_text('{"partiprompts97.txt": "a cat", "b": "a dog"}')
    assert DPGPrompts(path).keys == ['b', 'partiprompts97']
    path.write_text('{"a.txt": "a cat", "a": "a dog"}')
    with pytest.raises(ValueError, match='differ only by ".txt"'):
        DPGPrompts(path)


def test_prompt_without_questions_is_an_error(csv_file, tmp_path):
    path = tmp_path / 'prompts.json'
    path.write_text('{"zzz": "a prompt"}')
    with pytest.raises(KeyError, match="prompt 'zzz' has no questions"):
        run(DPGMetric(csv_file, vqa=QuestionVQA()), DPGPrompts(path))


def test_official_results_file_parses(tmp_path):
    path = tmp_path / 'res.txt'
    path.write_text('x/a.png, 0.5, 0.5\nModel: m\nL1 category scores:\n'
                    '\tentity: 90.5\n\tglobal: 80.0\nL2 category scores:\n'
                    '\tentity - whole: 91.0\nImage path: x\n'
                    'DPG-Bench score: 83.25\n')
    assert read_dpg_results(path) == {'dpg': 83.25, 'entity': 90.5,
                                      'global': 80.0,
                                      'L2/entity - whole': 91.0}


def test_tool_picks_the_official_script_of_the_layout(monkeypatch):
    import runpy
    tools = Path(__file__).resolve().parents[1] / 'tools' / 'eval'
    monkeypatch.syspath_prepend(str(tools))
    command = runpy.run_path(str(tools / 'dpg_bench.py'))['official_command']
    grid = command('grid', 'py', '/src/ELLA')
    assert grid['cwd'] == '/src/ELLA/.' and grid['command'][1] == \
        'dpg_bench/compute_dpg_bench.py'
    separate = command('separate', 'py', '/src/reca', 'q.csv')
    assert separate['cwd'] == '/src/reca/Benchmark'
    assert separate['command'][1] == 'dpgbench/compute_dpg_bench.py'
    assert separate['command'][-1] == str(Path('q.csv').resolve())
