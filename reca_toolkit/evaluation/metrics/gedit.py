"""GEdit-Bench (EN): edits scored with VIEScore by a multimodal LLM.

Two judge calls per edit, with the user's copies of VIEScore's prompts:
semantic consistency (SC: instruction, source and edited image; several
0-10 scores, the *minimum* counts) and perceptual quality (PQ: the edited
image alone; minimum again). The edited image is resized to the source's
size first. Overall O = sqrt(SC * PQ). Each of SC, PQ and O is averaged per
task group and the reported score is the mean of the group means; the same
over the rows marked ``Intersection_exist`` is reported as ``*_intersection``
(``calculate_statistics.py``). The RecA fork's "gpt4o" backbone calls
``gpt-4.1-2025-04-14``.

Upstream retries an unparsable reply once and then *guesses a random score*;
here a reply still unparsable after ``malformed_retries`` is counted as
malformed and left out.
"""
import ast
import json
import math
import re

import numpy as np
from PIL import Image

from reca_toolkit.datasets.transforms.loading import load_image
from reca_toolkit.evaluation.metrics.judged import (JudgedMetric, pred_image,
                                                    read_template)
from reca_toolkit.registry import METRICS

DELIMITER = '||V^=^V||'


def _scores_in(obj):
    score = obj.get('score') if isinstance(obj, dict) else None
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        score = [score]
    if isinstance(score, list) and score and all(
            isinstance(s, (int, float)) and not isinstance(s, bool)
            and 0 <= s <= 10 for s in score):
        return [float(s) for s in score]
    return None


def parse_viescore_reply(text):
    """VIEScore's ``score`` list from a reply, or None.

    Accepted, as upstream: JSON between two ``||V^=^V||`` delimiters; else
    the outermost ``{...}``; else a bare ``[a, b]`` list; else a bare
    integer 0-10.
    """
    if text.count(DELIMITER) == 2:
        body = text.split(DELIMITER)[1]
    elif '{' in text and '}' in text:
        body = text[text.find('{'):text.rfind('}') + 1]
    else:
        bare = text.strip()
        if re.fullmatch(r'\[\s*\d+\s*(,\s*\d+\s*)*\]', bare):
            return _scores_in(dict(score=ast.literal_eval(bare)))
        if re.fullmatch(r'\d+', bare):
            return _scores_in(dict(score=int(bare)))
        return None
    try:
        return _scores_in(json.loads(body.replace('\n', ' ').strip()))
    except json.JSONDecodeError:
        return None


@METRICS.register_module()
class GEditMetric(JudgedMetric):
    """Args:
        sc_template: VIEScore's semantic-consistency prompt for editing
            (context + two-image edit rule + SC rule) with ``<instruction>``.
        pq_template: VIEScore's perceptual-quality prompt.
        malformed_retries: extra judge calls for an unparsable reply.
        judge, out_dir, source: see :class:`JudgedMetric`. Images are saved
            in upstream's layout ``fullset/<group>/<lang>/<key>.png`` and
            ``<key>_SRCIMG.png``.
    """

    default_prefix = 'gedit'

    def __init__(self, sc_template, pq_template, judge, out_dir,
                 malformed_retries=1, source=None, collect_device='cpu',
                 prefix=None):
        super().__init__(judge, out_dir, source, collect_device, prefix)
        self.sc_template = read_template(sc_template, ['<instruction>'])
        self.pq_template = read_template(pq_template, [])
        self.templates.update(sc=sc_template, pq=pq_template)
        self.malformed_retries = malformed_retries

    def judge_scores(self, text, images):
        """``(scores, replies, status)`` of one question."""
        replies = []
        for _ in range(self.malformed_retries + 1):
            reply = self.ask(text, images)
            replies.append(reply)
            if reply is None:
                return None, replies, 'judge_error'
            scores = parse_viescore_reply(reply)
            if scores is not None:
                return scores, replies, 'ok'
        return None, replies, 'malformed'

    def process(self, data_batch, data_samples):
        for sample in self.samples(data_samples):
            folder = (f"fullset/{sample['task_type']}/"
                      f"{sample['instruction_language']}")
            source = load_image(sample['img_path'])
            edited = pred_image(sample).resize(source.size, Image.BICUBIC)
            self.save(source, f"{folder}/{sample['key']}_SRCIMG.png")
            self.save(edited, f"{folder}/{sample['key']}.png")
            sc, sc_replies, sc_status = self.judge_scores(
                self.sc_template.replace('<instruction>',
                                         sample['instruction']),
                [source, edited])
            pq, pq_replies, pq_status = self.judge_scores(self.pq_template,
                                                          [edited])
            record = dict(key=sample['key'], group=sample['task_type'],
                          intersection=bool(sample['intersection_exist']),
                          sc_replies=sc_replies, pq_replies=pq_replies,
                          status=next((s for s in ('judge_error',
                                                   'malformed')
                                       if s in (sc_status, pq_status)),
                                      'ok'))
            if record['status'] == 'ok':
                record.update(sc=min(sc), pq=min(pq),
                              overall=math.sqrt(min(sc) * min(pq)))
            self.results.append(record)

    def compute_metrics(self, results):
        ok = [r for r in results if r['status'] == 'ok']
        scores = {}
        groups = sorted({r['group'] for r in ok})
        for subset, suffix in ((ok, ''), ([r for r in ok if
                                           r['intersection']],
                                          '_intersection')):
            for key in ('sc', 'pq', 'overall'):
                means = [np.mean([r[key] for r in subset if r['group'] == g])
                         for g in groups
                         if any(r['group'] == g for r in subset)]
                scores[f'{key}{suffix}'] = float(np.mean(means)) if means \
                    else float('nan')
        for g in groups:
            scores[f'{g}/overall'] = float(np.mean(
                [r['overall'] for r in ok if r['group'] == g]))
        scores.update(self.counts(results))
        self.write_records(results, scores)
        return scores
