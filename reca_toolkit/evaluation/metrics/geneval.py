"""GenEval (Ghosh et al. 2023): object-focused text-to-image alignment.

Reading order: the official folder layout, the detection filter, the
geometry, the per-image rule (:func:`evaluate`), aggregation by tag name,
then :class:`GenEvalMetric`, which ties them to MMEngine.

The rule is a native re-implementation of ``djghosh13/geneval``'s
``evaluation/evaluate_images.py``: detections above 0.3 confidence (0.9 for
``counting``), at most 16 per class, NMS off; ``include`` clauses are ANDed
and ``exclude`` clauses ORed; colour is checked on the top-``count``
detections only; position compares box centres after shrinking the offset
by 0.1 of the summed box sizes. Scores and boxes are float32 as mmdet's
are, and tied scores are ordered as numpy's ``argsort`` puts them, so
boundary cases fall as upstream's (docs/evaluation.md, "Parity"). Its
learned parts are injected: a detector and a colour classifier
(:mod:`reca_toolkit.evaluation.scorers`). With the palette scorers it is
GenEval-Shapes, exact on rendered scenes.

Differences from the official summary script, on purpose: results are keyed
by tag *name* (``summary_scores.py`` prints a fixed header over columns in
``os.listdir`` order), and prompt-level accuracy groups by prompt folder, not
by metadata text, so a suite that repeats a prompt counts each repeat.
"""
import json
import os.path as osp
from pathlib import Path

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from PIL import Image

from reca_toolkit.evaluation.pixels import images_of
from reca_toolkit.evaluation.scorers.builder import build_scorer, scorer_info
from reca_toolkit.evaluation.scorers.base import file_sha256
from reca_toolkit.evaluation.scorers.open_clip_colors import GENEVAL_COLORS
from reca_toolkit.registry import METRICS


# the official folder layout --------------------------------------------------
def prompt_dir(root, index):
    return Path(root) / f'{index:05d}'


def write_prompt_folder(root, index, metadata, images):
    """``<root>/<index:05d>/metadata.jsonl`` (one JSON object, as the
    official generator writes it) and ``samples/<i:05d>.png``."""
    folder = prompt_dir(root, index)
    (folder / 'samples').mkdir(parents=True, exist_ok=True)
    with open(folder / 'metadata.jsonl', 'w') as f:
        json.dump(metadata, f)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / 'samples' / f'{i:05d}.png')
        Image.fromarray(image).save(paths[-1])
    return paths


# detections -----------------------------------------------------------------
def box_iou(a, b):
    """IoU with the official +1 pixel convention."""
    def area(box):
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)
    inter = area([max(a[0], b[0]), max(a[1], b[1]),
                  min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    return inter / union if union else 0


def keep_detections(detections, threshold, max_objects=16, max_overlap=1.0):
    """Class name -> detections above ``threshold``, most confident first,
    at most ``max_objects`` each, greedy NMS unless ``max_overlap`` is 1.

    As ``evaluate_image`` does with mmdet's float32 score column: scores
    are compared with ``threshold`` in float32 (a score of exactly
    ``float32(threshold)`` is dropped) and ordered by
    ``np.argsort(scores)[::-1]``, numpy's default (unstable) sort reversed,
    so among tied scores the later-listed detection comes first.
    """
    by_class = {}
    for det in detections:
        by_class.setdefault(det.label, []).append(det)
    kept = {}
    for label, dets in by_class.items():
        scores = np.array([d.score for d in dets], dtype=np.float32)
        order = np.argsort(scores)[::-1]
        order = order[scores[order] > np.float32(threshold)]
        order = order[:max_objects].tolist()
        chosen = []
        while order:
            best = dets[order.pop(0)]
            chosen.append(best)
            if max_overlap < 1:
                order = [i for i in order
                         if box_iou(best.box, dets[i].box) < max_overlap]
        if chosen:
            kept[label] = chosen
    return kept


# geometry --------------------------------------------------------------------
def relative_position(box_a, box_b, margin=0.1):
    """Relations of box A to box B among left of / right of / above / below.

    The centre offset is shrunk towards zero by ``margin`` times the summed
    box sizes, then divided by the *unshrunk* offset's length; a relation
    holds where that component exceeds 0.5 in magnitude (image y points
    down, so "below" is positive dy).
    """
    # float32 like mmdet's boxes, so boundary cases round as upstream's
    a = np.asarray(box_a[:4], np.float32)
    b = np.asarray(box_b[:4], np.float32)
    offset = (a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2
    size_a, size_b = np.abs(a[2:] - a[:2]), np.abs(b[2:] - b[:2])
    revised = np.maximum(np.abs(offset) - margin * (size_a + size_b), 0) * \
        np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add('left of')
    if dx > 0.5:
        relations.add('right of')
    if dy < -0.5:
        relations.add('above')
    if dy > 0.5:
        relations.add('below')
    return relations


# the per-image rule ----------------------------------------------------------
def _color_rank(color):
    """Reasons list colours in GenEval's order (``COLORS`` of
    ``evaluate_images.py``), others after them by name."""
    return (GENEVAL_COLORS.index(color), '') if color in GENEVAL_COLORS \
        else (len(GENEVAL_COLORS), color)


def evaluate(objects, metadata, classify_colors, margin=0.1):
    """``(correct, reason)`` for one image.

    Args:
        objects: class name -> detections, most confident first.
        metadata: one GenEval metadata record.
        classify_colors: ``(detections, classname) -> colour names``.
    """
    correct = True
    reasons = []
    groups = []
    for req in metadata.get('include', []):
        name, count = req['class'], req['count']
        found = objects.get(name, [])[:count]
        matched = len(found) >= count
        if not matched:
            reasons.append(f'expected {name}>={count}, found {len(found)}')
        elif 'color' in req:
            colors = classify_colors(found, name)
            if colors.count(req['color']) < count:
                matched = False
                seen = ', '.join(f'{colors.count(c)} {c}'
                                 for c in sorted(set(colors), key=_color_rank))
                reasons.append(f"expected {req['color']} {name}>={count}, "
                               f"found {colors.count(req['color'])} "
                               f"{req['color']}; and {seen}")
        if matched and 'position' in req:
            relation, target = req['position']
            if groups[target] is None:
                matched = False
                reasons.append(f'no target for {name} to be {relation}')
            else:
                for det in found:
                    for target_det in groups[target]:
                        seen = relative_position(det.box, target_det.box,
                                                 margin)
                        if relation not in seen:
                            matched = False
                            reasons.append(
                                f'expected {name} {relation} target, found '
                                f"{' and '.join(sorted(seen))} target")
                            break
                    if not matched:
                        break
        correct &= matched
        groups.append(found if matched else None)
    for req in metadata.get('exclude', []):
        found = len(objects.get(req['class'], []))
        if found >= req['count']:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, "
                           f'found {found}')
    return correct, '\n'.join(reasons)


# aggregation -----------------------------------------------------------------
def summarize(records):
    """Per-tag image accuracy, their mean (``overall``), and image- and
    prompt-level accuracy over all images; keyed by name."""
    by_tag, by_prompt = {}, {}
    for r in records:
        by_tag.setdefault(r['tag'], []).append(bool(r['correct']))
        by_prompt.setdefault(r['prompt_index'], []).append(bool(r['correct']))
    scores = {tag: float(np.mean(v)) for tag, v in by_tag.items()}
    scores['overall'] = float(np.mean(list(scores.values())))
    scores['image_accuracy'] = float(np.mean(
        [c for v in by_tag.values() for c in v]))
    scores['prompt_accuracy'] = float(np.mean(
        [any(v) for v in by_prompt.values()]))
    return scores


def read_official_results(path):
    """The official scorer's ``results.jsonl`` -> records for
    :func:`summarize`; the prompt index comes from the image's folder."""
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                records.append(dict(
                    prompt_index=int(Path(row['filename']).parent.parent.name),
                    tag=row['tag'], correct=bool(row['correct']),
                    reason=row.get('reason', ''),
                    filename=row['filename']))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f'{path} line {n}: not a GenEval result '
                                 f'record ({type(e).__name__}: {e})') from None
    if not records:
        raise ValueError(f'{path} holds no results')
    return records


@METRICS.register_module()
class GenEvalMetric(BaseMetric):
    """GenEval on prompt samples from :class:`GenEvalPrompts` (or
    GenEval-Shapes' :class:`GenEvalShapesPrompts`).

    Each sample's ``pred`` holds its N images (``[N, 3, H, W]`` in [-1, 1]).
    Three ways to score:

    * native: ``detector`` (and ``color_classifier``) given -- scored here,
      on every rank, as images arrive;
    * external: ``external_command`` given -- the images are written in the
      official layout and the official scorer runs in its own environment
      (``ExternalCommand``); its ``results.jsonl`` is parsed;
    * neither: images are only written (score them elsewhere).

    Args:
        out_dir: where the official layout, ``results.jsonl`` (official
            record format) and ``summary.json`` go; required for the
            external mode, optional for native scoring.
        detector, color_classifier, external_command: ``SCORERS`` configs
            or built objects, built on first use.
        source: score only samples of this data source (None: all).
        threshold, counting_threshold, max_objects, max_overlap,
            position_margin: the official constants.
    """

    default_prefix = 'geneval'

    def __init__(self, out_dir=None, detector=None, color_classifier=None,
                 external_command=None, source=None, threshold=0.3,
                 counting_threshold=0.9, max_objects=16, max_overlap=1.0,
                 position_margin=0.1, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if external_command is not None and detector is not None:
            raise ValueError('GenEvalMetric scores natively (detector=) or '
                             'externally (external_command=), not both')
        if out_dir is None and detector is None:
            raise ValueError('GenEvalMetric needs out_dir= for the official '
                             'folder layout unless it scores natively '
                             '(detector=)')
        self.out_dir = out_dir
        self.scorer_cfgs = dict(detector=detector,
                                color_classifier=color_classifier,
                                external_command=external_command)
        self.scorers = {}
        self.source = source
        self.threshold = threshold
        self.counting_threshold = counting_threshold
        self.max_objects = max_objects
        self.max_overlap = max_overlap
        self.position_margin = position_margin
        self.resolution = None
        self.images_per_prompt = set()

    @property
    def mode(self):
        if self.scorer_cfgs['external_command'] is not None:
            return 'external'
        return 'native' if self.scorer_cfgs['detector'] is not None \
            else 'none'

    def scorer(self, name):
        if name not in self.scorers:
            self.scorers[name] = build_scorer(self.scorer_cfgs[name])
        return self.scorers[name]

    def score_image(self, image, metadata):
        """``(correct, reason, objects)`` of one uint8 image."""
        threshold = self.counting_threshold \
            if metadata['tag'] == 'counting' else self.threshold
        objects = keep_detections(self.scorer('detector')(image), threshold,
                                  self.max_objects, self.max_overlap)

        def classify_colors(found, classname):
            classifier = self.scorer('color_classifier')
            if classifier is None:
                raise ValueError(
                    f"metadata of prompt '{metadata['prompt']}' asks for a "
                    'colour, but GenEvalMetric has no color_classifier')
            return classifier(image, found, classname)

        correct, reason = evaluate(objects, metadata, classify_colors,
                                   self.position_margin)
        return correct, reason, objects

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            if self.source is not None and sample.get('source') != self.source:
                continue
            index = int(sample['index'])
            metadata = sample['metadata']
            images = images_of(sample['pred'])
            self.resolution = list(images.shape[1:3])
            self.images_per_prompt.add(len(images))
            paths = write_prompt_folder(self.out_dir, index, metadata,
                                        images) if self.out_dir else \
                [None] * len(images)
            # One entry per prompt: MMEngine truncates the collected results
            # to the dataset's length.
            records = []
            for image, path in zip(images, paths):
                record = dict(prompt_index=index, tag=metadata['tag'],
                              prompt=metadata['prompt'],
                              metadata=json.dumps(metadata),
                              filename=str(path) if path else None)
                if self.mode == 'native':
                    correct, reason, objects = self.score_image(image,
                                                                metadata)
                    record.update(correct=correct, reason=reason, details={
                        k: [list(d.box) + [d.score] for d in v]
                        for k, v in objects.items()})
                records.append(record)
            self.results.append(records)

    def compute_metrics(self, results):
        results = [record for records in results for record in records]
        if self.mode == 'none':
            print_log(f'GenEvalMetric: {len(results)} images written to '
                      f'{self.out_dir}; no scorer configured',
                      logger='current')
            return dict(images=len(results))
        if self.mode == 'external':
            results_file = osp.join(self.out_dir, 'results.jsonl')
            self.scorer('external_command')(image_dir=self.out_dir,
                                            results_file=results_file)
            scored = read_official_results(results_file)
            missing = {r['prompt_index'] for r in results} - \
                {r['prompt_index'] for r in scored}
            extra = {r['prompt_index'] for r in scored} - \
                {r['prompt_index'] for r in results}
            if missing or extra:
                raise ValueError(
                    f'{results_file} does not match this run: prompt folders '
                    f'not scored {sorted(missing)[:10]}, folders scored that '
                    f'this run did not write {sorted(extra)[:10]}; use an '
                    f'empty out_dir')
            results = scored
        elif self.out_dir:
            self._write_results(results)
        scores = summarize(results)
        if self.out_dir:
            with open(osp.join(self.out_dir, 'summary.json'), 'w') as f:
                json.dump(dict(scores=scores, card=self.card_info()), f,
                          indent=2)
        return scores

    def _write_results(self, results):
        """Per-image records in the official ``results.jsonl`` format."""
        with open(osp.join(self.out_dir, 'results.jsonl'), 'w') as f:
            for r in results:
                f.write(json.dumps(dict(
                    filename=r['filename'], tag=r['tag'], prompt=r['prompt'],
                    correct=r['correct'], reason=r['reason'],
                    metadata=r['metadata'],
                    details=json.dumps(r['details']))) + '\n')

    def card_info(self):
        """What an evaluation card records about this metric."""
        info = dict(
            metric=type(self).__name__, mode=self.mode, out_dir=self.out_dir,
            resolution=self.resolution,
            images_per_prompt=sorted(self.images_per_prompt),
            threshold=self.threshold,
            counting_threshold=self.counting_threshold,
            max_objects=self.max_objects, max_overlap=self.max_overlap,
            position_margin=self.position_margin,
            scorers={name: scorer_info(self.scorers.get(name), cfg)
                     for name, cfg in self.scorer_cfgs.items()
                     if cfg is not None})
        results_file = self.out_dir and osp.join(self.out_dir,
                                                 'results.jsonl')
        if results_file and osp.isfile(results_file):
            info['results_sha256'] = file_sha256(results_file)
        return info
