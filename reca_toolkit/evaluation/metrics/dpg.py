"""DPG-Bench (ELLA): dense-prompt alignment by a question graph and VQA.

Each prompt has DSG questions (``dpg_bench.csv``: ``item_id``,
``proposition_id``, ``dependency``, ``tuple``,
``question_natural_language``). A VQA model answers every question about an
image; a question scores 1 only for the exact answer ``yes``, and is zeroed
when a parent (``dependency``, 0 meaning none) scored 0 -- in question
order, so a zeroed parent zeroes its children too. An image's score is the
mean over its questions; DPG = 100 x the mean over image files. Category
scores, L2 (``entity - whole``, keyed ``L2/entity - whole``) and L1
(``entity``), average the answers *before* zeroing.

This is ``TencentQQGYLab/ELLA:dpg_bench/compute_dpg_bench.py``, including
its quirks, each the default here:

* the question graph is read as its ``prepare_dpg_data`` reads it: a
  repeated ``proposition_id`` replaces the earlier one, and an item whose
  rows resume after another item's starts afresh;
* ``skip_first_question`` reproduces its ``if i == 0: continue``, which
  drops the CSV's first question; published numbers were computed with it.
  When the dropped question is a parent (``partiprompts97``), zeroing looks
  the parent up, fails, and upstream skips that image file: so does this
  metric, logging each skipped file;
* with the ``grid`` layout the category scores come from the answers about
  the *last* tile only (upstream copies the answers after each crop and
  keeps the last copy); ``average_tile_categories=True`` uses every tile's.

Layouts: ``grid`` saves one 2 x 2 grid per prompt (``<key>.png``, ELLA)
and scores each tile, a file's score being the mean over its tiles;
``separate`` saves ``<key>_<i>.png``, one file per image, scored as the RecA
authors' modified script (``HorizonWind2004/reconstruction-alignment:
Benchmark/dpgbench/compute_dpg_bench.py``) does, once per file (it asks the
same deterministic VQA four times, which changes nothing).

With ``external_command`` the images are only written and the official
script (ELLA's for ``grid``, RecA's for ``separate``) runs in its own
environment (mPLUG via modelscope); its results file is parsed.
"""
import csv
import math
import os.path as osp
import re
from pathlib import Path

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from PIL import Image

from reca_toolkit.evaluation.pixels import images_of
from reca_toolkit.evaluation.scorers.builder import build_scorer, scorer_info
from reca_toolkit.evaluation.scorers.base import file_sha256
from reca_toolkit.registry import METRICS

LAYOUTS = ('grid', 'separate')
GRID_TILES = 4  # ELLA crops at most a 2 x 2 grid
CSV_COLUMNS = ('item_id', 'proposition_id', 'dependency', 'tuple',
               'question_natural_language')


def read_question_graph(path, skip_first_question=False):
    """``{item_id: [(qid, parents, category, question), ...]}`` in file
    order, read as upstream's ``prepare_dpg_data`` reads it."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'DPG-Bench question file {path} does not '
                                'exist')
    graph, previous = {}, None
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames
                                                      or ())]
        if missing:
            raise ValueError(f'{path} lacks the columns {missing}')
        for i, row in enumerate(reader):
            item = row['item_id']
            if skip_first_question and i == 0:
                # kept, maybe empty: upstream skips a prompt left without
                # questions; it does not fail on it
                graph[item], previous = {}, item
                continue
            try:
                qid = int(row['proposition_id'])
                parents = [int(d) for d in row['dependency'].split(',')]
            except ValueError as e:
                raise ValueError(f'{path} row {i + 2}: {e}') from None
            if item != previous:
                graph[item] = {}
            graph[item][qid] = (qid, parents,
                                row['tuple'].split('(')[0].strip(),
                                row['question_natural_language'])
            previous = item
    return {item: list(qs.values()) for item, qs in graph.items()}


class MissingParent(LookupError):
    """A question's parent is not among the prompt's questions."""


def score_answers(questions, answers):
    """``(score, raw)``: the image's zeroed mean, and ``qid -> 0/1`` before
    zeroing.

    Parents are checked in order up to the first that scored 0, as
    upstream: only a parent reached that way and absent raises
    :class:`MissingParent` (upstream's ``KeyError``).

    Args:
        questions: ``[(qid, parents, category, question), ...]``.
        answers: ``qid -> answer text``.
    """
    raw = {qid: float(answers[qid] == 'yes') for qid, *_ in questions}
    scores = dict(raw)
    for qid, parents, *_ in questions:
        for parent in parents:
            if parent == 0:
                continue
            if parent not in scores:
                raise MissingParent(f'question {qid} depends on question '
                                    f'{parent}, which this prompt lacks')
            if scores[parent] == 0:
                scores[qid] = 0.0
                break
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
    """The official results file -> ``{'dpg': score, '<L1>': score, ...,
    'L2/<L2>': score, ...}``."""
    text = Path(path).read_text()
    total = re.search(r'DPG-Bench score:\s*([-\d.eE]+|nan)', text)
    if total is None:
        raise ValueError(f'{path} has no "DPG-Bench score:" line')
    scores = {'dpg': float(total.group(1))}
    l1, _, rest = text.partition('L1 category scores:')[2].partition(
        'L2 category scores:')
    for block, prefix in ((l1, ''), (rest, 'L2/')):
        for name, value in re.findall(r'^\t([^:\n]+):\s*([-\d.eE]+|nan)$',
                                      block, re.MULTILINE):
            scores[prefix + name.strip()] = float(value)
    return scores


def category_scores(pairs):
    """``[(L2 category, 0/1), ...]`` -> L1 and ``L2/`` scores in percent;
    an L1 category is its L2 categories' answers pooled (the text before
    the first ``-``)."""
    by_l2 = {}
    for category, value in pairs:
        by_l2.setdefault(category, []).append(value)
    by_l1 = {}
    for category, values in by_l2.items():
        by_l1.setdefault(category.split('-')[0].strip(), []).extend(values)
    scores = {l1: 100 * float(np.mean(v)) for l1, v in sorted(by_l1.items())}
    scores.update({f'L2/{l2}': 100 * float(np.mean(v))
                   for l2, v in sorted(by_l2.items())})
    return scores


@METRICS.register_module()
class DPGMetric(BaseMetric):
    """Args:
        question_file: ``dpg_bench.csv``.
        vqa: a ``SCORERS`` config or object, ``vqa(image, question) ->
            answer``; built on first use.
        out_dir: images go to ``<out_dir>/images`` (only images: the
            official scripts read every file there), the external scorer's
            results to ``<out_dir>/dpg_results.txt``.
        layout: ``'grid'`` (ELLA: one 2 x 2 grid file per prompt, scored
            per tile) or ``'separate'`` (the RecA authors: one file per
            image).
        skip_first_question: reproduce upstream's dropped first CSV row
            (the default); False scores it.
        average_tile_categories: ``grid`` only: category scores from every
            tile's answers rather than upstream's last tile's.
        external_command: an ``ExternalCommand`` running the official
            script, with ``{image_dir}``, ``{results_file}``,
            ``{resolution}`` and ``{pic_num}`` placeholders.
    """

    default_prefix = 'dpg'

    def __init__(self, question_file, vqa=None, out_dir=None, layout='grid',
                 skip_first_question=True, average_tile_categories=False,
                 external_command=None, source=None, collect_device='cpu',
                 prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if layout not in LAYOUTS:
            raise ValueError(f"layout='{layout}' is not one of {LAYOUTS}")
        if (vqa is None) == (external_command is None):
            raise ValueError('DPGMetric needs exactly one of vqa= (score '
                             'here) or external_command= (official script)')
        if external_command is not None and out_dir is None:
            raise ValueError('the external DPG scorer reads image files: '
                             'give out_dir=')
        if average_tile_categories and (layout != 'grid'
                                        or external_command is not None):
            raise ValueError('average_tile_categories=True applies to '
                             "native scoring of layout='grid' only")
        self.question_file = question_file
        self.graph = read_question_graph(question_file, skip_first_question)
        self.skip_first_question = skip_first_question
        self.average_tile_categories = average_tile_categories
        self.vqa_cfg = vqa
        self.vqa = None
        self.external_cfg = external_command
        self.out_dir = out_dir
        self.layout = layout
        self.source = source
        self.resolution = None
        self.pic_num = None
        self.skipped = []

    @property
    def image_dir(self):
        return osp.join(self.out_dir, 'images')

    def save(self, image, name):
        if self.out_dir:
            Path(self.image_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(osp.join(self.image_dir, name))

    def files_of(self, key, images):
        """``[(file name, tiles)]``: what upstream scores as one file."""
        if self.layout == 'grid':
            if len(images) > GRID_TILES:
                raise ValueError(
                    f"prompt '{key}' has {len(images)} images; the grid "
                    f'layout holds at most {GRID_TILES} (a 2 x 2 grid)')
            return [(f'{key}.png', list(images))]
        return [(f'{key}_{i}.png', [image]) for i, image in enumerate(images)]

    def check_external_key(self, key):
        """The official scripts recover the key from the file name: ELLA
        cuts at the first ``.``, RecA at the first ``_``."""
        sep = '.' if self.layout == 'grid' else '_'
        if sep in key:
            raise ValueError(
                f"prompt key '{key}' holds '{sep}', so the official script "
                f"for layout='{self.layout}' would not find its questions")

    def score_file(self, key, tiles):
        """``dict(score, categories)`` of one image file, or
        ``dict(skipped=reason)`` where upstream's ``try`` skips it."""
        if self.vqa is None:
            self.vqa = build_scorer(self.vqa_cfg)
        questions = self.graph[key]
        if not questions:
            return dict(skipped='no questions left after skip_first_question')
        scores, raws = [], []
        for crop in tiles:
            pil = Image.fromarray(crop)
            answers = {qid: self.vqa(pil, q) for qid, _, _, q in questions}
            try:
                score, raw = score_answers(questions, answers)
            except MissingParent as e:
                return dict(skipped=str(e))
            scores.append(score)
            raws.append(raw)
        if not self.average_tile_categories:
            raws = raws[-1:]
        return dict(score=sum(scores) / len(scores), categories=[
            (category, raw[qid]) for raw in raws
            for qid, _, category, _ in questions])

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
            if self.external_cfg is not None:
                self.check_external_key(key)
            files = self.files_of(key, images)
            for name, tiles in files:
                self.save(tile(np.stack(tiles)) if self.layout == 'grid'
                          else tiles[0], name)
            if self.external_cfg is not None:
                self.results.append(dict(key=key))
                continue
            self.results.append(dict(key=key, files=[
                dict(name=name, **self.score_file(key, tiles))
                for name, tiles in files]))

    def compute_metrics(self, results):
        if self.external_cfg is not None:
            results_file = osp.join(self.out_dir, 'dpg_results.txt')
            build_scorer(self.external_cfg)(
                image_dir=self.image_dir, results_file=results_file,
                resolution=self.resolution[0], pic_num=self.pic_num)
            scores = read_dpg_results(results_file)
            if math.isnan(scores['dpg']):
                script = "ELLA's" if self.layout == 'grid' else \
                    "the RecA authors' modified"
                raise ValueError(
                    f'{results_file}: the official script scored no image '
                    f"file; layout='{self.layout}' needs {script} "
                    'compute_dpg_bench.py')
            return scores
        files = [f for r in results for f in r['files']]
        self.skipped = [f"{f['name']}: {f['skipped']}" for f in files
                        if 'skipped' in f]
        if self.skipped:
            print_log(f'DPGMetric: {len(self.skipped)} of {len(files)} image '
                      'files skipped, as compute_dpg_bench.py skips them: '
                      + '; '.join(self.skipped), logger='current', level=30)
        files = [f for f in files if 'skipped' not in f]
        if not files:
            raise ValueError('DPGMetric: every image file was skipped')
        scores = {'dpg': 100 * float(np.mean([f['score'] for f in files]))}
        scores.update(category_scores(
            [pair for f in files for pair in f['categories']]))
        return scores

    def card_info(self):
        return dict(metric=type(self).__name__, out_dir=self.out_dir,
                    layout=self.layout, resolution=self.resolution,
                    images_per_prompt=self.pic_num,
                    skip_first_question=self.skip_first_question,
                    average_tile_categories=self.average_tile_categories,
                    skipped_files=self.skipped,
                    question_file=self.question_file,
                    question_sha256=file_sha256(self.question_file),
                    scorer=scorer_info(self.vqa, self.vqa_cfg)
                    or scorer_info(None, self.external_cfg))
