"""WISE: world-knowledge-informed text-to-image generation, judged 0-2.

The judge sees the image with the user's copy of WISE's protocol (its
``PROMPT`` / ``EXPLANATION`` fields as ``<prompt>`` / ``<explanation>``)
and replies with Consistency, Realism and Aesthetic Quality, each 0-2.
WiScore = (0.7 C + 0.2 R + 0.1 A) / 2, averaged per category; categories
follow the prompt id: Cultural 1-400, Time 401-567, Space 568-700, Biology
701-800, Physics 801-900, Chemistry 901-1000.

Two overall scores exist and both are reported, by name:
``overall_weighted`` is the official one (``PKU-YuanGroup/WISE``
``WISE_legacy/Calculate.py``: 0.4 Cultural + 0.167 Time + 0.133 Space +
0.1 each science), ``overall_unweighted`` the RecA one (``cal_score.py``:
the plain mean of the six); both only once every category has scores.
RecA judged with ``gpt-4o-2024-05-13`` at
temperature 0, max_tokens 2000.

Upstream writes the sentinel 9.9 for a score it cannot parse; here such a
reply is counted as malformed and left out.
"""
import re

import numpy as np

from reca_toolkit.evaluation.metrics.judged import (JudgedMetric, pred_image,
                                                    read_template)
from reca_toolkit.registry import METRICS

SCORE_PATTERN = re.compile(
    r'\*{0,2}(Consistency|Realism|Aesthetic Quality)\*{0,2}\s*[:：]?\s*(\d)',
    re.IGNORECASE)
CATEGORIES = (('cultural', 1, 400), ('time', 401, 567), ('space', 568, 700),
              ('biology', 701, 800), ('physics', 801, 900),
              ('chemistry', 901, 1000))
OFFICIAL_WEIGHTS = dict(cultural=0.4, time=0.167, space=0.133, biology=0.1,
                        physics=0.1, chemistry=0.1)


def parse_wise_reply(text):
    """``{consistency, realism, aesthetic_quality}`` (0-2 each), or None if
    any is missing or out of range."""
    found = {}
    for name, value in SCORE_PATTERN.findall(text):
        found[name.lower().replace(' ', '_')] = int(value)
    keys = ('consistency', 'realism', 'aesthetic_quality')
    if all(k in found and 0 <= found[k] <= 2 for k in keys):
        return {k: found[k] for k in keys}
    return None


def wiscore(scores):
    return (0.7 * scores['consistency'] + 0.2 * scores['realism'] +
            0.1 * scores['aesthetic_quality']) / 2


def category(prompt_id):
    for name, low, high in CATEGORIES:
        if low <= prompt_id <= high:
            return name
    raise ValueError(f'WISE prompt_id {prompt_id} is outside 1-1000')


@METRICS.register_module()
class WISEMetric(JudgedMetric):
    """Args:
        template: the judge's user message, with ``<prompt>`` and
            ``<explanation>``.
        judge, out_dir, source: see :class:`JudgedMetric`. Images are saved
            as ``<out_dir>/<prompt_id>.png``, upstream's layout.
    """

    default_prefix = 'wise'

    def __init__(self, template, judge, out_dir, source=None,
                 collect_device='cpu', prefix=None):
        super().__init__(judge, out_dir, source, collect_device, prefix)
        self.template = read_template(template, ['<prompt>', '<explanation>'])
        self.templates['template'] = template

    def process(self, data_batch, data_samples):
        for sample in self.samples(data_samples):
            prompt_id = int(sample['prompt_id'])
            image = pred_image(sample)
            self.save(image, f'{prompt_id}.png')
            text = self.template.replace('<prompt>', sample['prompt']) \
                .replace('<explanation>', sample['explanation'])
            reply = self.ask(text, [image])
            scores = parse_wise_reply(reply) if reply is not None else None
            self.results.append(dict(
                prompt_id=prompt_id, category=category(prompt_id),
                subcategory=sample['subcategory'], reply=reply,
                scores=scores,
                wiscore=wiscore(scores) if scores else None,
                status='judge_error' if reply is None else
                'ok' if scores else 'malformed'))

    def compute_metrics(self, results):
        ok = [r for r in results if r['status'] == 'ok']
        scores = {}
        for name, _, _ in CATEGORIES:
            values = [r['wiscore'] for r in ok if r['category'] == name]
            if values:
                scores[name] = float(np.mean(values))
        if len(scores) == len(CATEGORIES):
            scores['overall_weighted'] = sum(
                OFFICIAL_WEIGHTS[k] * scores[k] for k in OFFICIAL_WEIGHTS)
            scores['overall_unweighted'] = float(np.mean(
                [scores[k] for k in OFFICIAL_WEIGHTS]))
        scores.update(self.counts(results))
        self.write_records(results, scores)
        return scores
