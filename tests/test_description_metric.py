"""DescriptionAccuracyMetric, and image-to-text validation on a real toy."""
import pytest
import torch

from conftest import REPO
from reca_toolkit.evaluation.metrics.description import (
    DescriptionAccuracyMetric, parse_description, score_description)

TRUTH = ('a red triangle at the top left, a blue circle at the center and '
         'a green square at the bottom right')


def test_parse_reads_the_grammar_of_describe():
    from reca_toolkit.datasets.shapes import ShapeObject, ShapeScene, describe
    scene = ShapeScene((ShapeObject('triangle', 'red', 0, 0),
                        ShapeObject('circle', 'white', 3, 3),
                        ShapeObject('circle', 'white', 3, 2)), 4)
    assert parse_description(describe(scene)) == {
        ('red', 'triangle', 'top left'): 1,
        ('white', 'circle', 'bottom right'): 1,
        ('white', 'circle', 'bottom center'): 1}
    assert not parse_description('three shapes, more or less')


def test_score_counts_objects_and_the_held_out_pairs_apart():
    # Order does not matter; every object matches.
    same = ('a green square at the bottom right and a red triangle at the '
            'top left, a blue circle at the center')
    assert score_description(same, TRUTH)['exact'] == 1.0
    # The held-out red triangle named with the wrong colour, and an extra
    # object: 2 of 3 true objects found, 2 of 4 named ones right.
    wrong = ('a blue triangle at the top left, a blue circle at the center, '
             'a green square at the bottom right and a red circle at the '
             'center')
    s = score_description(wrong, TRUTH)
    assert (s['exact'], s['tp'], s['pred'], s['true']) == (0.0, 2, 4, 3)
    # (red, triangle) is a held-out pair; (blue, circle), (green, square)
    # are not.
    assert (s['held_tp'], s['held_true']) == (0, 1)
    assert (s['train_tp'], s['train_true']) == (2, 2)
    with pytest.raises(ValueError, match='names no object'):
        score_description(same, 'a picture')


def scored(pred, truth):
    """A result as RecAModel.predict gives it for an image-to-text row."""
    return dict(pred_text=pred, conversations=[('Describe this image.',
                                                truth)])


def test_metric_pools_objects_over_scenes_and_is_registered():
    import reca_toolkit.evaluation.metrics.description  # noqa: F401
    from reca_toolkit.registry import METRICS
    metric = METRICS.build(dict(type='DescriptionAccuracyMetric'))
    assert isinstance(metric, DescriptionAccuracyMetric)
    metric.process({}, [
        scored(TRUTH, TRUTH),
        scored('a red circle at the center',
               'a red circle at the center and a white square at the top '
               'right'),
        scored('nothing I can name', 'a red triangle at the center')])
    result = metric.compute_metrics(metric.results)
    # 1 of 3 exact; objects: 3 + 1 + 0 found of 3 + 2 + 1 true, of 3 + 1
    # named; held-out red triangles: 1 found of 2.
    assert result['accuracy'] == pytest.approx(1 / 3)
    assert result['object_recall'] == pytest.approx(4 / 6)
    assert result['object_precision'] == pytest.approx(1.0)
    assert result['object_f1'] == pytest.approx(0.8)
    assert result['held_out_recall'] == pytest.approx(1 / 2)
    assert result['train_recall'] == pytest.approx(3 / 4)
    # A model that names nothing scores 0, not NaN.
    silent = DescriptionAccuracyMetric()
    silent.process({}, [scored('', TRUTH)])
    assert silent.compute_metrics(silent.results) == dict(
        accuracy=0.0, object_precision=0.0, object_recall=0.0,
        object_f1=0.0, held_out_recall=0.0, train_recall=0.0)
    with pytest.raises(KeyError, match=r"result 0 has no \['pred_text'\]"):
        metric.process({}, [dict(conversations=[('Describe.', TRUTH)])])
    # Beside other metrics it scores its own source only.
    own = DescriptionAccuracyMetric(source='describe')
    own.process({}, [dict(scored(TRUTH, TRUTH), source='describe'),
                     dict(source='geneval_shapes', pred=None)])
    assert len(own.results) == 1


@pytest.mark.parametrize('config', ['configs/reca/janus_toy.py',
                                    'projects/harmon_toy/configs/reca.py'])
def test_a_pretrained_toy_describes_unseen_scenes_in_validation(config):
    """The toys' validation source of held-out scenes, answered by
    RecAModel.predict (BaseUMM.describe) and scored: each toy names most
    objects of the scene it sees, few of another scene's."""
    from reca_toolkit.datasets.multi_source import collate_by_source
    from reca_toolkit.engine.inference import load_model
    from reca_toolkit.registry import DATASETS
    model, cfg = load_model(str(REPO / config), cfg_options={
        'val_dataloader.dataset.datasets.1.source.num_scenes': 16})
    scenes = DATASETS.build(cfg.val_dataloader.dataset).datasets[1]
    batch = collate_by_source([scenes[i] for i in range(len(scenes))])
    results = model.test_step(batch)
    assert all(r['source'] == 'describe' for r in results)
    metric = DescriptionAccuracyMetric(source='describe')
    metric.process({}, results)
    own = metric.compute_metrics(metric.results)
    truths = [r['conversations'] for r in results]
    metric.results.clear()
    metric.process({}, [dict(r, conversations=t) for r, t in
                        zip(results, truths[1:] + truths[:1])])
    other = metric.compute_metrics(metric.results)
    # Over 32 such scenes the Janus toy names 0.64 of the objects.
    assert own['object_recall'] > 0.45
    assert own['object_recall'] > other['object_recall'] + 0.3
