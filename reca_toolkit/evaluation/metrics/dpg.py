"""DPG-Bench (ELLA): dense-prompt alignment by a question graph and VQA.

Each prompt has DSG questions (``dpg_bench.csv``: ``item_id``,
``proposition_id``, ``dependency``, ``tuple``,
``question_natural_language``). A VQA model answers every question about an
image; a question scores 1 only for the exact answer ``yes``, and is zeroed
when any of its parents (``dependency``, 0 meaning none) scored 0 -- in
question order, so a zeroed parent zeroes its children too. An image's score
is the mean over its questions; DPG = 100 x the mean over images. Category
scores (L2 ``entity - whole``, L1 ``entity``) average the answers *before*
zeroing, as upstream does.

Layouts: ``grid`` saves one 2 x 2 grid per prompt (``<key>.png``, ELLA) and
scores each tile; ``separate`` saves ``<key>_<i>.png`` (the RecA fork) and
scores each file once (RecA scores every file four times with the same
deterministic VQA, which changes nothing).

``skip_first_question`` reproduces upstream's ``if i == 0: continue`` in
``prepare_dpg_data``, which drops the CSV's first question; published
numbers were computed with it.

With ``external_command`` the images are only written and ELLA's
``compute_dpg_bench.py`` runs in its own environment (mPLUG via
modelscope); its results file is parsed.
"""
import csv
import os.path as osp
import re
from pathlib import Path

import numpy as np
from mmengine.evaluator import BaseMetric
from PIL import Image

from reca_toolkit.evaluation.pixels import images_of
from reca_toolkit.evaluation.scorers.builder import build_scorer, scorer_info
from reca_toolkit.evaluation.scorers.base import file_sha256
from reca_toolkit.registry import METRICS

LAYOUTS = ('grid', 'separate')
CSV_COLUMNS = ('item_id', 'proposition_id', 'dependency', 'tuple',
               'question_natural_language')


def read_question_graph(path, skip_first_question=False):
    """``{item_id: [(qid, parents, category, question), ...]}`` in file
    order."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'DPG-Bench question file {path} does not '
                                'exist')
    graph = {}
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames
                                                      or ())]
        if missing:
            raise ValueError(f'{path} lacks the columns {missing}')
        for i, row in enumerate(reader):
            if skip_first_question and i == 0:
                continue
            try:
                qid = int(row['proposition_id'])
                parents = [int(d) for d in row['dependency'].split(',')]
            except ValueError as e:
                raise ValueError(f'{path} row {i + 2}: {e}') from None
            graph.setdefault(row['item_id'], []).append(
                (qid, parents, row['tuple'].split('(')[0].strip(),
                 row['question_natural_language']))
    return graph


def score_answers(questions, answers):
    """``(score, raw)``: the image's zeroed mean, and ``qid -> 0/1`` before
    zeroing.

    Args:
        questions: ``[(qid, parents, category, question), ...]``.
        answers: ``qid -> answer text``.
    """
    raw = {qid: float(answers[qid] == 'yes') for qid, *_ in questions}
    scores = dict(raw)
    for qid, parents, *_ in questions:
        if any(p != 0 and scores[p] == 0 for p in parents):
            scores[qid] = 0.0
    return sum(scores.values()) / len(scores), raw


def tile(images, cols=2):
    """``[N, H, W, 3]`` -> one grid image, ELLA's 2 x 2 layout."""
    n, h, w, _ = images.shape
    rows = -(-n // cols)
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return grid


def read_dpg_results(path):
    """ELLA's results file -> ``{'dpg': score, '<L1>': score, ...}``."""
    text = Path(path).read_text()
    total = re.search(r'DPG-Bench score:\s*([-\d.eE]+)', text)
    if total is None:
        raise ValueError(f'{path} has no "DPG-Bench score:" line')
    scores = {'dpg': float(total.group(1))}
    block = text.split('L1 category scores:')[-1].split(
        'L2 category scores:')[0]
    for name, value in re.findall(r'^\t([^:\n]+):\s*([-\d.eE]+)$', block,
                                  re.MULTILINE):
        scores[name.strip()] = float(value)
    return scores


@METRICS.register_module()
class DPGMetric(BaseMetric):
    """Args:
        question_file: ``dpg_bench.csv``.
        vqa: a ``SCORERS`` config or object, ``vqa(image, question) ->
            answer``; built on first use.
        out_dir: images go to ``<out_dir>/images`` (only images: ELLA's
            script reads every file there), the external scorer's results
            to ``<out_dir>/dpg_results.txt``.
        layout: ``'grid'`` or ``'separate'``.
        skip_first_question: reproduce upstream's dropped first CSV row.
        external_command: an ``ExternalCommand`` running ELLA's script, with
            ``{image_dir}``, ``{results_file}``, ``{resolution}`` and
            ``{pic_num}`` placeholders (grid layout).
    """

    default_prefix = 'dpg'

    def __init__(self, question_file, vqa=None, out_dir=None, layout='grid',
                 skip_first_question=False, external_command=None,
                 source=None, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if layout not in LAYOUTS:
            raise ValueError(f"layout='{layout}' is not one of {LAYOUTS}")
        if (vqa is None) == (external_command is None):
            raise ValueError('DPGMetric needs exactly one of vqa= (score '
                             'here) or external_command= (official script)')
        if external_command is not None and (out_dir is None
                                             or layout != 'grid'):
            raise ValueError('the external DPG scorer reads 2 x 2 grids: '
                             "give out_dir= and layout='grid'")
        self.question_file = question_file
        self.graph = read_question_graph(question_file, skip_first_question)
        self.skip_first_question = skip_first_question
        self.vqa_cfg = vqa
        self.vqa = None
        self.external_cfg = external_command
        self.out_dir = out_dir
        self.layout = layout
        self.source = source
        self.resolution = None
        self.pic_num = None

    @property
    def image_dir(self):
        return osp.join(self.out_dir, 'images')

    def save(self, image, name):
        if self.out_dir:
            Path(self.image_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(osp.join(self.image_dir, name))

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            if self.source is not None and sample.get('source') != self.source:
                continue
            key = sample['key']
            if key not in self.graph:
                raise KeyError(f"prompt '{key}' has no questions in "
                               f'{self.question_file}')
            images = images_of(sample['pred'])
            self.resolution = list(images.shape[1:3])
            self.pic_num = len(images)
            if self.layout == 'grid':
                self.save(tile(images), f'{key}.png')
            else:
                for i, image in enumerate(images):
                    self.save(image, f'{key}_{i}.png')
            if self.external_cfg is not None:
                self.results.append(dict(key=key))
                continue
            if self.vqa is None:
                self.vqa = build_scorer(self.vqa_cfg)
            questions = self.graph[key]
            image_scores, raws = [], []
            for image in images:
                pil = Image.fromarray(image)
                answers = {qid: self.vqa(pil, q)
                           for qid, _, _, q in questions}
                score, raw = score_answers(questions, answers)
                image_scores.append(score)
                raws.append(raw)
            self.results.append(dict(
                key=key, image_scores=image_scores,
                categories=[(cat, raw[qid]) for raw in raws
                            for qid, _, cat, _ in questions]))

    def compute_metrics(self, results):
        if self.external_cfg is not None:
            results_file = osp.join(self.out_dir, 'dpg_results.txt')
            build_scorer(self.external_cfg)(
                image_dir=self.image_dir, results_file=results_file,
                resolution=self.resolution[0], pic_num=self.pic_num)
            return read_dpg_results(results_file)
        scores = {'dpg': 100 * float(np.mean(
            [s for r in results for s in r['image_scores']]))}
        by_l2 = {}
        for r in results:
            for cat, value in r['categories']:
                by_l2.setdefault(cat, []).append(value)
        by_l1 = {}
        for cat, values in by_l2.items():
            by_l1.setdefault(cat.split('-')[0].strip(), []).extend(values)
        scores.update({l1: 100 * float(np.mean(v))
                       for l1, v in sorted(by_l1.items())})
        return scores

    def card_info(self):
        return dict(metric=type(self).__name__, out_dir=self.out_dir,
                    layout=self.layout, resolution=self.resolution,
                    images_per_prompt=self.pic_num,
                    skip_first_question=self.skip_first_question,
                    question_file=self.question_file,
                    question_sha256=file_sha256(self.question_file),
                    scorer=scorer_info(self.vqa, self.vqa_cfg)
                    or scorer_info(None, self.external_cfg))
