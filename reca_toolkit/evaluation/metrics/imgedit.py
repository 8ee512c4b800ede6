"""ImgEdit (single-turn, "Basic"): edits judged 1-5 by a multimodal LLM.

Per edit, the judge sees the source and the edited image with the rubric of
the edit's type (``judge_prompt.json``, ``<edit_prompt>`` replaced by the
instruction) and replies with lines such as ``Prompt Compliance: 4``. The
sample's score is the mean of every ``<label>: <int>`` line, rounded to two
decimals as upstream's ``step1_get_avgscore.py`` does; type scores are means
over samples of that type and ``overall`` the mean over all samples
(``step2_typescore.py``). RecA judged with ``gpt-4o-2024-08-06``.
"""
import json
import os.path as osp

import numpy as np

from reca_toolkit.datasets.transforms.loading import load_image
from reca_toolkit.evaluation.metrics.judged import JudgedMetric, pred_image
from reca_toolkit.registry import METRICS


def parse_imgedit_reply(text):
    """The integers of every ``<label>: <digits>`` line, upstream's rule (a
    line like ``Score: 4.`` or ``Score: 4/5`` does not count)."""
    scores = []
    for line in text.splitlines():
        parts = line.strip().split(': ')
        if len(parts) == 2 and parts[1].isdigit():
            scores.append(int(parts[1]))
    return scores


@METRICS.register_module()
class ImgEditMetric(JudgedMetric):
    """Args:
        judge_prompts: ImgEdit's ``judge_prompt.json`` (edit type -> rubric).
        judge, out_dir, source: see :class:`JudgedMetric`. Edited images are
            saved as ``<out_dir>/<key>.png``, upstream's layout.
    """

    default_prefix = 'imgedit'

    def __init__(self, judge_prompts, judge, out_dir, source=None,
                 collect_device='cpu', prefix=None):
        super().__init__(judge, out_dir, source, collect_device, prefix)
        if not osp.isfile(judge_prompts):
            raise FileNotFoundError(f'ImgEdit judge prompts {judge_prompts} '
                                    'do not exist')
        with open(judge_prompts, encoding='utf-8') as f:
            self.rubrics = json.load(f)
        self.templates['judge_prompts'] = judge_prompts

    def process(self, data_batch, data_samples):
        for sample in self.samples(data_samples):
            key, edit_type = sample['key'], sample['edit_type']
            if edit_type not in self.rubrics:
                raise KeyError(f"edit '{key}' has type '{edit_type}', which "
                               f'{self.templates["judge_prompts"]} has no '
                               f'rubric for; it has {sorted(self.rubrics)}')
            edited = pred_image(sample)
            self.save(edited, f'{key}.png')
            source = load_image(sample['img_path'])
            text = self.rubrics[edit_type].replace('<edit_prompt>',
                                                   sample['instruction'])
            reply = self.ask(text, [source, edited])
            scores = parse_imgedit_reply(reply) if reply is not None else []
            status = 'judge_error' if reply is None else \
                'ok' if scores else 'malformed'
            self.results.append(dict(
                key=key, edit_type=edit_type, reply=reply, scores=scores,
                score=round(float(np.mean(scores)), 2) if scores else None,
                status=status))

    def compute_metrics(self, results):
        ok = [r for r in results if r['status'] == 'ok']
        scores = {}
        for edit_type in sorted({r['edit_type'] for r in ok}):
            scores[edit_type] = float(np.mean(
                [r['score'] for r in ok if r['edit_type'] == edit_type]))
        scores['overall'] = float(np.mean([r['score'] for r in ok])) \
            if ok else float('nan')
        scores.update(self.counts(results))
        self.write_records(results, scores)
        return scores
