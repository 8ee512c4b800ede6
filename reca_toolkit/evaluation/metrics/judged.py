"""The shared part of benchmarks scored by an LLM judge (ImgEdit, GEdit,
WISE): a lazily built judge, templates read from the user's files, replies
kept per sample, and failures counted instead of raised.

Every sample's record has a ``status``: ``ok``, ``malformed`` (the reply
did not parse; upstream scripts drop such samples silently or, in GEdit's
case, substitute a random score) or ``judge_error`` (the request failed
after its retries). Scores aggregate ``ok`` records only, and the counts of
the other two are reported next to them.
"""
import json
import os.path as osp
from pathlib import Path

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from PIL import Image

from reca_toolkit.evaluation.pixels import images_of
from reca_toolkit.evaluation.scorers.builder import build_scorer, scorer_info
from reca_toolkit.evaluation.scorers.base import file_sha256
from reca_toolkit.evaluation.scorers.openai_judge import JudgeError

STATUSES = ('ok', 'malformed', 'judge_error')


def read_template(path, placeholders):
    """A judge prompt template, checked for its placeholders."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'judge template {path} does not exist')
    text = Path(path).read_text(encoding='utf-8')
    missing = [p for p in placeholders if p not in text]
    if missing:
        raise ValueError(f'judge template {path} lacks the placeholders '
                         f'{missing}')
    return text


def pred_image(sample):
    """The sample's (first) predicted image as a PIL image."""
    return Image.fromarray(images_of(sample['pred'])[0])


class JudgedMetric(BaseMetric):
    """Base of judge-scored metrics.

    Args:
        judge: a ``SCORERS`` config (``OpenAICompatibleJudge``) or object.
        out_dir: where edited / generated images and ``judgements.jsonl``
            (every reply, parsed scores and status) are written.
        source: score only samples of this data source (None: all).
    """

    def __init__(self, judge, out_dir, source=None, collect_device='cpu',
                 prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.judge_cfg = judge
        self.judge = None
        self.out_dir = out_dir
        self.source = source
        self.templates = {}

    def ask(self, text, images):
        """The judge's reply, or None after a failed request (logged)."""
        if self.judge is None:
            self.judge = build_scorer(self.judge_cfg)
        try:
            return self.judge(text, images)
        except JudgeError as e:
            print_log(f'{type(self).__name__}: {e}', logger='current',
                      level=30)
            return None

    def samples(self, data_samples):
        for sample in data_samples:
            if self.source is None or sample.get('source') == self.source:
                yield sample

    def save(self, image, relative):
        path = Path(self.out_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        return str(path)

    def counts(self, results):
        return {f'num_{s}': sum(r['status'] == s for r in results)
                for s in STATUSES}

    def write_records(self, results, scores):
        path = osp.join(self.out_dir, 'judgements.jsonl')
        with open(path, 'w', encoding='utf-8') as f:
            for r in results:
                f.write(json.dumps(r, ensure_ascii=False) + '\n')
        with open(osp.join(self.out_dir, 'summary.json'), 'w') as f:
            json.dump(dict(scores=scores, card=self.card_info()), f,
                      indent=2)
        bad = sum(r['status'] != 'ok' for r in results)
        if bad:
            print_log(f'{type(self).__name__}: {bad} of {len(results)} '
                      f'samples not scored (malformed reply or judge error); '
                      f'see {path}', logger='current', level=30)

    def card_info(self):
        info = dict(metric=type(self).__name__, out_dir=self.out_dir,
                    judge=scorer_info(self.judge, self.judge_cfg),
                    templates={name: dict(path=path,
                                          sha256=file_sha256(path))
                               for name, path in self.templates.items()})
        return info
