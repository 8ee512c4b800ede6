"""Description accuracy: how well a model's image-to-text names what is in
a shape scene.

RecA trains a UMM's generation on its own understanding; what that costs
understanding is the other half of its balance sheet (a reproduction of
RecA on BAGEL saw MathVista fall 71.6 -> 51.6). On the rendered shape
scenes (:mod:`reca_toolkit.datasets.shapes`) the ground truth is exact, so
understanding can be scored exactly too: the model describes scenes it was
never trained on, and its description is parsed back into objects
(:func:`parse_description`, the grammar of
:func:`~reca_toolkit.datasets.shapes.describe`) and compared with the
scene's.

:class:`DescriptionAccuracyMetric` scores results that carry the generated
``pred_text`` and the scene's ``conversations`` (its first answer is the
ground-truth description): what ``RecAModel.predict`` returns for a
validation source of image-to-text scenes, each answered by the UMM's
:meth:`~reca_toolkit.models.umm.base.BaseUMM.describe`.
"""
import re
from collections import Counter

from mmengine.evaluator import BaseMetric

from reca_toolkit.datasets.shapes import HELD_OUT_PAIRS, PALETTE, SHAPES
from reca_toolkit.registry import METRICS

_OBJECT = re.compile(
    r'\ba (' + '|'.join(PALETTE) + r') (' + '|'.join(SHAPES) + r') at the '
    r'((?:top|middle|bottom) (?:left|center|right)|center)\b')


def parse_description(text):
    """The ``(colour, shape, place)`` objects a description names, as a
    multiset (``Counter``); anything outside the grammar of
    :func:`~reca_toolkit.datasets.shapes.describe` is ignored."""
    return Counter(_OBJECT.findall(text))


def score_description(pred, truth, held_out=HELD_OUT_PAIRS):
    """One description against the ground truth's.

    Returns a dict: ``exact`` (1.0 when the two name the same objects, order
    aside), ``tp``, ``pred`` and ``true`` (object counts for precision and
    recall: an object counts when its colour, shape and place all match),
    and ``held_tp`` / ``held_true`` and ``train_tp`` / ``train_true``, the
    recall counts of objects of ``held_out`` colour-shape pairs and of the
    others.
    """
    pred_objects = parse_description(pred)
    true_objects = parse_description(truth)
    if not true_objects:
        raise ValueError(f'ground-truth description {truth!r} names no '
                         'object in the grammar of shapes.describe')
    hits = pred_objects & true_objects
    held = {o for o in true_objects if (o[0], o[1]) in held_out}

    def count(objects, keep):
        return sum(n for o, n in objects.items() if keep(o))

    return dict(
        exact=float(pred_objects == true_objects),
        tp=sum(hits.values()), pred=sum(pred_objects.values()),
        true=sum(true_objects.values()),
        held_tp=count(hits, lambda o: o in held),
        held_true=count(true_objects, lambda o: o in held),
        train_tp=count(hits, lambda o: o not in held),
        train_true=count(true_objects, lambda o: o not in held))


@METRICS.register_module()
class DescriptionAccuracyMetric(BaseMetric):
    """Image-to-text description accuracy on shape scenes.

    Each result needs ``pred_text`` (what the model said) and
    ``conversations``, whose first answer is the scene's
    :func:`~reca_toolkit.datasets.shapes.describe`. Metrics, under
    ``prefix`` (default ``describe``):

    - ``accuracy``: the fraction of scenes described exactly (every object,
      with its colour, shape and place, nothing more) -- the number to
      watch, e.g. ``CollapseMonitorHook(quality_key='describe/accuracy')``;
    - ``object_precision``, ``object_recall``, ``object_f1``: over objects
      pooled across scenes (precision 0 where nothing is named);
    - ``held_out_recall``, ``train_recall``: object recall for the
      ``held_out`` colour-shape pairs (which sparse captions never name in
      the toys) and for the others; NaN where there are none.

    Args:
        held_out: colour-shape pairs counted apart; by default
            :data:`~reca_toolkit.datasets.shapes.HELD_OUT_PAIRS`.
        source: score only results of this data source (None: all), beside
            other metrics of a validation set of several sources.
    """

    default_prefix = 'describe'

    def __init__(self, held_out=HELD_OUT_PAIRS, source=None,
                 collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.held_out = frozenset(tuple(p) for p in held_out)
        self.source = source

    def process(self, data_batch, data_samples):
        for i, sample in enumerate(data_samples):
            if self.source is not None and sample.get('source') != \
                    self.source:
                continue
            missing = [k for k in ('pred_text', 'conversations')
                       if k not in sample]
            if missing:
                raise KeyError(
                    f'DescriptionAccuracyMetric: result {i} has no '
                    f'{missing}; it has {sorted(sample)}')
            (_, truth), *_ = sample['conversations']
            self.results.append(score_description(
                sample['pred_text'], truth, self.held_out))

    def compute_metrics(self, results):
        total = Counter()
        for result in results:
            total.update(result)

        def ratio(a, b, empty=float('nan')):
            return total[a] / total[b] if total[b] else empty

        # Naming nothing is precision 0, as scikit-learn's zero_division=0.
        precision = ratio('tp', 'pred', empty=0.0)
        recall = ratio('tp', 'true')
        f1 = (2 * precision * recall / (precision + recall)
              if total['tp'] else 0.0)
        return dict(accuracy=total['exact'] / len(results),
                    object_precision=precision, object_recall=recall,
                    object_f1=f1,
                    held_out_recall=ratio('held_tp', 'held_true'),
                    train_recall=ratio('train_tp', 'train_true'))
