"""GenEval's per-image rule on hand-computed cases, and GenEval-Shapes'
exactness on rendered ground truth."""
import copy
import json
import random
import sys

import pytest
import torch

from reca_toolkit.datasets import GenEvalPrompts, GenEvalShapesPrompts
from reca_toolkit.datasets.geneval_shapes import TAGS, ground_truth_scene
from reca_toolkit.datasets.shapes import (ALL_PAIRS, HELD_OUT_PAIRS,
                                          ShapeScene, ShapeScenes,
                                          random_scene, render, slot_box)
from reca_toolkit.evaluation import GenEvalMetric
from reca_toolkit.evaluation.metrics.geneval import (evaluate,
                                                     keep_detections,
                                                     read_official_results,
                                                     relative_position,
                                                     write_prompt_folder)
from reca_toolkit.evaluation.scorers import (Detection, ExternalCommand,
                                             PaletteColorClassifier,
                                             PaletteShapeDetector)


def det(label, box, score=1.0, color=None):
    d = Detection(label, score, box)
    d.color = color  # read by the fake colour classifier below
    return d


def fake_colors(found, classname):
    return [d.color for d in found]


def judge(metadata, detections, tag_threshold=0.3):
    objects = keep_detections(detections, tag_threshold)
    return evaluate(objects, metadata, fake_colors)


# -- geometry --------------------------------------------------------------
@pytest.mark.parametrize('box_a, box_b, expected', [
    # offset (-12, 0); shrunk by 0.1 * (10 + 10) = 2 -> -10 / 12 = -0.83
    ((0, 0, 10, 10), (12, 0, 22, 10), {'left of'}),
    ((12, 0, 22, 10), (0, 0, 10, 10), {'right of'}),
    ((0, 20, 10, 30), (0, 0, 10, 10), {'below'}),
    # offset (-1.5, 0) is inside the 2 px margin: no relation at all
    ((0, 0, 10, 10), (1.5, 0, 11.5, 10), set()),
    # diagonal (-12, -12): (-10, -10) / 16.97 = -0.59 on both axes
    ((0, 0, 10, 10), (12, 12, 22, 22), {'left of', 'above'}),
    # (-6, -6): (-4, -4) / 8.49 = -0.47; without the margin it would be
    # -0.71 on both axes
    ((0, 0, 10, 10), (6, 6, 16, 16), set()),
    # (-12, -5): (-10, -3) / 13 -> dx -0.77, dy -0.23
    ((0, 0, 10, 10), (12, 5, 22, 15), {'left of'}),
])
def test_relative_position_with_the_margin(box_a, box_b, expected):
    assert relative_position(box_a, box_b) == expected


def test_position_margin_is_a_parameter():
    # (-6, -6) relates on both axes once the margin is 0
    assert relative_position((0, 0, 10, 10), (6, 6, 16, 16), margin=0) == \
        {'left of', 'above'}


# -- the per-image rule -------------------------------------------------------
COUNT_TWO = dict(tag='counting', prompt='a photo of two circles',
                 include=[{'class': 'circle', 'count': 2}],
                 exclude=[{'class': 'circle', 'count': 3}])


@pytest.mark.parametrize('n, correct', [(1, False), (2, True), (3, False),
                                        (4, False)])
def test_counting_needs_exactly_n_through_the_exclude_clause(n, correct):
    dets = [det('circle', (20 * i, 0, 20 * i + 10, 10)) for i in range(n)]
    ok, reason = judge(COUNT_TWO, dets, 0.9)
    assert ok is correct
    if n == 3:
        assert reason == 'expected circle<3, found 3'


def test_counting_threshold_drops_unsure_detections():
    dets = [det('circle', (0, 0, 10, 10)), det('circle', (20, 0, 30, 10)),
            det('circle', (40, 0, 50, 10), score=0.5)]
    assert judge(COUNT_TWO, dets, tag_threshold=0.9)[0] is True
    assert judge(COUNT_TWO, dets, tag_threshold=0.3)[0] is False


RED_CIRCLE = dict(tag='colors', prompt='a photo of a red circle',
                  include=[{'class': 'circle', 'count': 1, 'color': 'red'}])


def test_colour_is_checked_on_the_most_confident_detections_only():
    blue_first = [det('circle', (0, 0, 10, 10), 0.95, 'blue'),
                  det('circle', (20, 0, 30, 10), 0.8, 'red')]
    ok, reason = judge(RED_CIRCLE, blue_first)
    assert not ok and reason.startswith('expected red circle>=1, found 0 red')
    red_first = [det('circle', (0, 0, 10, 10), 0.95, 'red'),
                 det('circle', (20, 0, 30, 10), 0.8, 'blue')]
    assert judge(RED_CIRCLE, red_first)[0] is True


def test_colour_top_count_for_two_objects():
    two_red = dict(tag='colors', prompt='two red circles',
                   include=[{'class': 'circle', 'count': 2, 'color': 'red'}])
    dets = [det('circle', (0, 0, 10, 10), 0.9, 'red'),
            det('circle', (20, 0, 30, 10), 0.8, 'blue'),
            det('circle', (40, 0, 50, 10), 0.7, 'red')]
    assert judge(two_red, dets)[0] is False  # top 2 = red, blue
    dets[1].score = 0.6
    assert judge(two_red, dets)[0] is True  # top 2 = red, red


CIRCLE_LEFT_OF_SQUARE = dict(
    tag='position', prompt='a photo of a circle left of a square',
    include=[{'class': 'square', 'count': 1},
             {'class': 'circle', 'count': 1, 'position': ['left of', 0]}])


def test_position_relates_the_second_clause_to_the_first():
    left = [det('circle', (0, 0, 10, 10)), det('square', (20, 0, 30, 10))]
    right = [det('circle', (20, 0, 30, 10)), det('square', (0, 0, 10, 10))]
    assert judge(CIRCLE_LEFT_OF_SQUARE, left)[0] is True
    ok, reason = judge(CIRCLE_LEFT_OF_SQUARE, right)
    assert not ok and reason == 'expected circle left of target, found ' \
        'right of target'


def test_position_without_its_target_fails_with_that_reason():
    ok, reason = judge(CIRCLE_LEFT_OF_SQUARE, [det('circle', (0, 0, 10, 10))])
    assert not ok
    assert reason.splitlines() == ['expected square>=1, found 0',
                                   'no target for circle to be left of']


def test_two_object_needs_both_and_ignores_order_of_detections():
    meta = dict(tag='two_object', prompt='a photo of a circle and a square',
                include=[{'class': 'circle', 'count': 1},
                         {'class': 'square', 'count': 1}])
    both = [det('square', (0, 0, 10, 10)), det('circle', (20, 0, 30, 10))]
    assert judge(meta, both)[0] is True
    ok, reason = judge(meta, both[:1])
    assert not ok and reason == 'expected circle>=1, found 0'


def test_keep_detections_caps_per_class_and_applies_nms():
    dets = [det('circle', (0, 0, 10, 10), 0.5 + i / 100) for i in range(20)]
    kept = keep_detections(dets, 0.3, max_objects=16)
    assert len(kept['circle']) == 16
    assert kept['circle'][0].score == pytest.approx(0.69)
    assert len(keep_detections(dets, 0.3, max_overlap=0.5)['circle']) == 1


# -- GenEval-Shapes -----------------------------------------------------------
def test_detector_parses_random_scenes_exactly():
    detector, classify = PaletteShapeDetector(), PaletteColorClassifier()
    rng = random.Random(0)
    for _ in range(1000):
        scene = random_scene(rng, pairs=ALL_PAIRS)
        image = render(scene)
        found = detector(image)
        colors = classify(image, found, None)
        parsed = {(d.label, c, int(d.box[1]) // 16, int(d.box[0]) // 16)
                  for d, c in zip(found, colors)}
        assert parsed == {(o.shape, o.color, o.row, o.col)
                          for o in scene.objects}
        for d in found:
            x0, y0, x1, y1 = slot_box(int(d.box[1]) // 16, int(d.box[0]) // 16)
            assert d.box == (x0, y0, x1 + 1, y1 + 1)


def test_detector_ignores_blotches_that_are_no_shape():
    image = render(random_scene(random.Random(1), max_objects=1))
    image = image.copy()
    image[0:3, 0:60] = (220, 40, 40)  # a thin red bar: too elongated
    image[40:56, 40:44] = (40, 80, 220)  # a blue strip
    assert len(PaletteShapeDetector()(image)) == 1


def score_ground_truth(prompts):
    metric = GenEvalMetric(detector=PaletteShapeDetector(),
                           color_classifier=PaletteColorClassifier())
    for i in range(len(prompts)):
        sample = prompts[i]
        image = torch.from_numpy(prompts.ground_truth(i).copy())
        sample['pred'] = image.permute(2, 0, 1) / 127.5 - 1
        metric.process(None, [sample])
    return metric, metric.evaluate(len(prompts))


def test_geneval_shapes_scores_1200_ground_truth_scenes_exactly():
    metric, scores = score_ground_truth(GenEvalShapesPrompts(
        num_prompts=1200))
    assert scores == {f'geneval/{k}': 1.0 for k in
                      TAGS + ('overall', 'image_accuracy', 'prompt_accuracy')}
    assert len(metric.results) == 0  # evaluate() clears them


def test_prompt_shift_gives_the_next_prompt_and_keeps_the_checks():
    plain = GenEvalShapesPrompts(num_prompts=60)
    shifted = GenEvalShapesPrompts(num_prompts=60, prompt_shift=1)
    n = len(plain)
    for i in range(n):
        assert shifted[i]['prompt'] == plain[(i + 1) % n]['prompt']
        assert shifted[i]['metadata'] == plain[i]['metadata']
        assert shifted[i]['seed'] == plain[i]['seed']
    assert (plain.card_info()['prompt_shift'],
            shifted.card_info()['prompt_shift']) == (0, 1)
    assert GenEvalPrompts(prompt_shift=2)[0]['prompt'] == \
        GenEvalPrompts()[2]['prompt']
    with pytest.raises(ValueError, match='prompt_shift must be >= 0'):
        GenEvalShapesPrompts(prompt_shift=-1)

    # A generator that reads its prompt (it draws the ground truth of the
    # prompt it is given) loses under the shift; one that ignores it (it
    # draws item i's ground truth whatever the prompt) scores the same.
    first = {}
    for i, record in enumerate(plain.records):
        first.setdefault(record['prompt'], i)

    def overall(prompts, reads_prompt):
        metric = GenEvalMetric(detector=PaletteShapeDetector(),
                               color_classifier=PaletteColorClassifier())
        for i in range(n):
            sample = prompts[i]
            drawn = first[sample['prompt']] if reads_prompt else i
            image = torch.from_numpy(plain.ground_truth(drawn).copy())
            sample['pred'] = image.permute(2, 0, 1) / 127.5 - 1
            metric.process(None, [sample])
        return metric.evaluate(n)['geneval/overall']

    assert overall(plain, True) == 1.0
    assert overall(shifted, True) < 0.5
    assert overall(shifted, False) == overall(plain, False) == 1.0


def test_wrong_scenes_score_what_the_rule_says():
    prompts = GenEvalShapesPrompts(num_prompts=12)
    metric = GenEvalMetric(detector=PaletteShapeDetector(),
                           color_classifier=PaletteColorClassifier())
    for i in range(len(prompts)):
        sample = prompts[i]
        # every prompt gets the ground truth of the prompt two tags on
        other = prompts.ground_truth((i + 4) % len(prompts))
        sample['pred'] = torch.from_numpy(other.copy()).permute(
            2, 0, 1) / 127.5 - 1
        metric.process(None, [sample])
    scores = metric.evaluate(len(prompts))
    # Only 'a photo of a triangle', given three triangles, holds: GenEval
    # counts only with an exclude clause.
    assert scores == pytest.approx({
        'geneval/single_object': 0.5, **{f'geneval/{t}': 0.0 for t in TAGS
                                         if t != 'single_object'},
        'geneval/overall': 1 / 12, 'geneval/image_accuracy': 1 / 12,
        'geneval/prompt_accuracy': 1 / 12})


# -- aggregation, through GenEvalMetric ---------------------------------------
OPPOSITE = {'left of': 'right of', 'right of': 'left of', 'above': 'below',
            'below': 'above'}
EMPTY = render(ShapeScene((), 4))


def pixels(images):
    """uint8 ``[H, W, 3]`` scenes -> a sample's ``pred``, ``[N, 3, H, W]``
    in [-1, 1]."""
    return torch.stack([torch.from_numpy(i.copy()).permute(2, 0, 1)
                        for i in images]) / 127.5 - 1


def flipped_position(prompts, index):
    """A scene of prompt ``index``'s objects in the opposite relation."""
    metadata = copy.deepcopy(prompts.records[index])
    clause = metadata['include'][1]
    clause['position'][0] = OPPOSITE[clause['position'][0]]
    return render(ground_truth_scene(metadata, random.Random(index)))


def metric_scores(metric, samples):
    """``(sample, images)`` pairs through ``metric``; scores by short
    name."""
    for sample, images in samples:
        metric.process(None, [dict(sample, pred=pixels(images))])
    scores = metric.evaluate(len(samples))
    return {k.partition('/')[2]: v for k, v in scores.items()}


def test_scores_average_tags_images_and_prompts_as_geneval_does(tmp_path):
    prompts = GenEvalShapesPrompts(num_prompts=12)
    truth = prompts.ground_truth
    assert [prompts.records[i]['tag'] for i in (0, 1, 4, 8)] == [
        'single_object', 'single_object', 'counting', 'position']
    metric = GenEvalMetric(out_dir=str(tmp_path),
                           detector=PaletteShapeDetector(),
                           color_classifier=PaletteColorClassifier())
    scores = metric_scores(metric, [
        (prompts[0], [truth(0, k) for k in range(3)]),  # 3 of 3 right
        (prompts[1], [EMPTY]),                          # 0 of 1
        (prompts[4], [EMPTY]),                          # 0 of 1
        (prompts[8], [truth(8), flipped_position(prompts, 8)]),  # 1 of 2
    ])
    assert scores == pytest.approx(dict(
        single_object=3 / 4, counting=0.0, position=1 / 2,
        # the mean over tags, not over the 7 images (4 / 7)
        overall=(3 / 4 + 0 + 1 / 2) / 3,
        image_accuracy=4 / 7,
        # prompts with any image right (all right: 1 / 4), by prompt, not by
        # tag (2 / 3)
        prompt_accuracy=2 / 4))
    positioned = prompts.records[8]['include'][1]
    relation = positioned['position'][0]
    reasons = [json.loads(line)['reason'] for line in
               (tmp_path / 'results.jsonl').read_text().splitlines()]
    assert reasons[-2:] == ['', f"expected {positioned['class']} {relation} "
                            f'target, found {OPPOSITE[relation]} target']


class UnsureExtra:
    """The palette detector, plus one detection at confidence 0.5 of the
    first object's class."""

    def __call__(self, image):
        found = PaletteShapeDetector()(image)
        return found + [Detection(found[0].label, 0.5, (0, 0, 4, 4))]


@pytest.mark.parametrize('counting_threshold, correct', [(0.9, 1.0),
                                                         (0.4, 0.0)])
def test_counting_prompts_drop_detections_below_their_threshold(
        counting_threshold, correct):
    prompts = GenEvalShapesPrompts(num_prompts=12)
    assert prompts.records[4]['tag'] == 'counting'
    metric = GenEvalMetric(detector=UnsureExtra(),
                           counting_threshold=counting_threshold)
    # n objects and an unsure n + 1-th: an exclude violation unless dropped
    scores = metric_scores(metric, [(prompts[4], [prompts.ground_truth(4)])])
    assert scores['counting'] == correct


@pytest.mark.parametrize('margin, correct', [(0.1, 0.0), (0.0, 1.0)])
def test_position_prompts_use_the_metrics_margin(margin, correct):
    prompts = GenEvalShapesPrompts(num_prompts=12)
    record = prompts.records[8]
    target, positioned = (c['class'] for c in record['include'])
    assert record['include'][1]['position'][0] == 'left of'

    class Diagonal:
        """The positioned object up-left of its target by 6 px: left of
        it only without a margin (test_relative_position_with_the_margin).
        """

        def __call__(self, image):
            return [Detection(positioned, 1.0, (0, 0, 10, 10)),
                    Detection(target, 1.0, (6, 6, 16, 16))]

    metric = GenEvalMetric(detector=Diagonal(), position_margin=margin)
    scores = metric_scores(metric, [(prompts[8], [EMPTY])])
    assert scores['position'] == correct


@pytest.mark.parametrize('threshold, correct', [(0.3, 1.0), (0.6, 0.0)])
def test_other_prompts_keep_detections_above_the_threshold(threshold,
                                                           correct):
    prompts = GenEvalShapesPrompts(num_prompts=12)
    assert prompts.records[2]['tag'] == 'two_object'

    class OneUnsure:
        """The scene's first object found at confidence 0.5 only."""

        def __call__(self, image):
            first, *rest = PaletteShapeDetector()(image)
            return [Detection(first.label, 0.5, first.box)] + rest

    metric = GenEvalMetric(detector=OneUnsure(), threshold=threshold)
    scores = metric_scores(metric, [(prompts[2], [prompts.ground_truth(2)])])
    assert scores['two_object'] == correct


def test_suite_is_fixed_split_by_tag_and_a_prefix_per_tag():
    small, large = GenEvalShapesPrompts(24), GenEvalShapesPrompts(600)
    assert [r['tag'] for r in small.records] == \
        [t for t in TAGS for _ in range(4)]
    for t, tag in enumerate(TAGS):
        assert small.records[4 * t:4 * t + 4] == \
            large.records[100 * t:100 * t + 4]
    assert GenEvalShapesPrompts(600).prompt_sha256() == large.prompt_sha256()
    assert GenEvalShapesPrompts(600, suite_seed=1).prompt_sha256() != \
        large.prompt_sha256()
    assert large[5]['seed'] == 5 and large[5]['num_images'] == 1


def test_color_attr_uses_held_out_pairs_that_training_never_draws():
    suite = GenEvalShapesPrompts(600)
    for record in suite.records:
        if record['tag'] == 'color_attr':
            pairs = {(c['color'], c['class']) for c in record['include']}
            assert pairs & HELD_OUT_PAIRS
    train = ShapeScenes(num_scenes=500, seed=0)
    seen = {(o.color, o.shape) for i in range(500)
            for o in train.scene(i).objects}
    assert not seen & HELD_OUT_PAIRS
    assert seen == set(ALL_PAIRS) - HELD_OUT_PAIRS


def test_image_only_shape_scenes_have_no_caption():
    assert set(ShapeScenes(num_scenes=2, captioned=False).raw(0)) == {'img'}


# -- official files -----------------------------------------------------------
def test_vendored_geneval_metadata():
    prompts = GenEvalPrompts()
    assert len(prompts) == 553
    tags = [r['tag'] for r in prompts.records]
    assert {t: tags.count(t) for t in TAGS} == dict(
        single_object=80, two_object=99, counting=80, colors=94,
        position=100, color_attr=100)
    assert prompts.prompt_sha256() == ('5c48e0813e812e3c373fa5c8ed07a8f0a4'
                                       '83be30272b4427b0559c8048e67c13')
    assert prompts[0]['seed'] == prompts[552]['seed'] == 0


def test_metadata_errors_name_file_and_line(tmp_path):
    bad = tmp_path / 'meta.jsonl'
    bad.write_text('{"tag": "colors", "prompt": "x", "include": []}\n'
                   '{"tag": "colors"}\n')
    with pytest.raises(ValueError, match=r'meta.jsonl line 2: missing keys'):
        GenEvalPrompts(bad)


FAKE_SCORER = '''
import json, os, sys
root, out = sys.argv[1], sys.argv[2]
with open(out, 'w') as f:
    for sub in sorted(os.listdir(root)):
        if not sub.isdigit():
            continue
        meta = json.load(open(os.path.join(root, sub, 'metadata.jsonl')))
        for name in sorted(os.listdir(os.path.join(root, sub, 'samples'))):
            f.write(json.dumps(dict(
                filename=os.path.join(root, sub, 'samples', name),
                tag=meta['tag'], prompt=meta['prompt'],
                correct=meta['tag'] != 'counting', reason='',
                metadata=json.dumps(meta))) + '\\n')
'''


def external_metric(tmp_path, prompts):
    """An external-mode metric running FAKE_SCORER, fed ``prompts``."""
    script = tmp_path / 'scorer.py'
    script.write_text(FAKE_SCORER)
    metric = GenEvalMetric(out_dir=str(tmp_path / 'images'),
                           external_command=dict(
                               type='ExternalCommand',
                               command=[sys.executable, str(script),
                                        '{image_dir}', '{results_file}']))
    for i in range(len(prompts)):
        sample = prompts[i]
        sample['pred'] = torch.zeros(prompts.num_images, 3, 64, 64)
        metric.process(None, [sample])
    return metric


def test_external_scorer_reads_the_official_layout(tmp_path):
    out = tmp_path / 'images'
    prompts = GenEvalShapesPrompts(num_prompts=12, num_images=2)
    scores = external_metric(tmp_path, prompts).evaluate(len(prompts))
    assert scores['geneval/counting'] == 0.0
    assert scores['geneval/colors'] == 1.0
    assert scores['geneval/overall'] == pytest.approx(5 / 6)
    assert len(read_official_results(out / 'results.jsonl')) == 24
    meta = json.loads((out / '00003' / 'metadata.jsonl').read_text())
    assert meta == prompts.records[3]
    assert sorted(p.name for p in (out / '00003' / 'samples').iterdir()) == \
        ['00000.png', '00001.png']


def test_external_results_of_another_run_are_refused(tmp_path):
    prompts = GenEvalShapesPrompts(num_prompts=6)
    # A folder an earlier run left in out_dir: the scorer scores it too.
    write_prompt_folder(tmp_path / 'images', 99, prompts.records[0], [EMPTY])
    metric = external_metric(tmp_path, prompts)
    with pytest.raises(ValueError, match=r'did not write \[99\]'):
        metric.evaluate(len(prompts))


def test_external_command_failure_shows_its_stderr(tmp_path):
    command = ExternalCommand([sys.executable, '-c',
                               'import sys; sys.exit("scorer broke")'])
    with pytest.raises(RuntimeError, match='scorer broke'):
        command(image_dir='x')
    with pytest.raises(KeyError, match='placeholder'):
        ExternalCommand(['{missing}'])(image_dir='x')


def test_colour_prompt_without_a_colour_classifier_is_an_error():
    metric = GenEvalMetric(detector=PaletteShapeDetector())
    prompts = GenEvalShapesPrompts(num_prompts=24)
    sample = prompts[12]  # a colors prompt
    assert sample['metadata']['tag'] == 'colors'
    sample['pred'] = torch.from_numpy(
        prompts.ground_truth(12).copy()).permute(2, 0, 1) / 127.5 - 1
    with pytest.raises(ValueError, match='no color_classifier'):
        metric.process(None, [sample])
