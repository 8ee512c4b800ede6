"""Judge-scored benchmarks: reply parsing (malformed replies included),
aggregation, and the OpenAI-compatible client against a loopback server."""
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch
from PIL import Image

from reca_toolkit.evaluation import GEditMetric, ImgEditMetric, WISEMetric
from reca_toolkit.evaluation.metrics.gedit import parse_viescore_reply
from reca_toolkit.evaluation.metrics.imgedit import parse_imgedit_reply
from reca_toolkit.evaluation.metrics.wise import parse_wise_reply
from reca_toolkit.evaluation.scorers import (JudgeError, JudgeVQA,
                                             OpenAICompatibleJudge)


# -- parsing ------------------------------------------------------------------
def test_imgedit_reply_parsing():
    reply = ('Brief reasoning: fine.\nPrompt Compliance: 4\n'
             'Visual Naturalness: 3\nPhysical & Detail Integrity: 5')
    assert parse_imgedit_reply(reply) == [4, 3, 5]
    # upstream's rule: "4." or "4/5" is not an integer line
    assert parse_imgedit_reply('Prompt Compliance: 4.\nScore: 4/5') == []
    assert parse_imgedit_reply('I cannot rate this image.') == []


@pytest.mark.parametrize('reply, scores', [
    ('||V^=^V||{"score": [7, 9], "reasoning": "ok"}||V^=^V||', [7.0, 9.0]),
    ('Sure!\n{"score": [8], "reasoning": "x"}\nDone', [8.0]),
    ('{"score": 6, "reasoning": "x"}', [6.0]),
    ('[6, 2]', [6.0, 2.0]),
    ('7', [7.0]),
    ('{"score": [11]}', None),  # out of range
    ('{"score": "high"}', None),
    ('{"score": [7, 9], "reasoning": ', None),
    ('the edit looks good', None),
    ('', None),
])
def test_viescore_reply_parsing(reply, scores):
    assert parse_viescore_reply(reply) == scores


@pytest.mark.parametrize('reply, scores', [
    ('Consistency: 2\nRealism: 1\nAesthetic Quality: 0',
     dict(consistency=2, realism=1, aesthetic_quality=0)),
    ('**Consistency**: 1\n**Realism**：2\n**Aesthetic Quality** 1',
     dict(consistency=1, realism=2, aesthetic_quality=1)),
    ('Consistency: 2\nRealism: 1', None),  # a score is missing
    ('Consistency: 5\nRealism: 1\nAesthetic Quality: 0', None),  # > 2
    ('no scores here', None),
])
def test_wise_reply_parsing(reply, scores):
    assert parse_wise_reply(reply) == scores


# -- aggregation with a scripted judge ----------------------------------------
class ScriptedJudge:
    """Replies from a list, in order; None raises a JudgeError."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    def __call__(self, text, images):
        self.calls.append((text, [i.size for i in images]))
        reply = self.replies.pop(0)
        if reply is None:
            raise JudgeError('connection refused')
        return reply


def feed(metric, samples):
    for sample in samples:
        sample.setdefault('pred', torch.zeros(3, 16, 16))
        metric.process(None, [sample])
    return metric.evaluate(len(samples))


@pytest.fixture
def source_image(tmp_path):
    path = tmp_path / 'src.png'
    Image.new('RGB', (24, 20), (10, 20, 30)).save(path)
    return str(path)


def test_imgedit_aggregates_by_type_and_counts_bad_replies(tmp_path,
                                                            source_image):
    rubric = tmp_path / 'judge_prompt.json'
    rubric.write_text(json.dumps({'add': 'Rate adding: <edit_prompt>.',
                                  'remove': 'Rate removing: <edit_prompt>.'}))
    judge = ScriptedJudge(['A: 5\nB: 4\nC: 4', 'A: 3\nB: 3\nC: 3',
                           'A: 1\nB: 2\nC: 2', 'garbage', None])
    metric = ImgEditMetric(str(rubric), judge, str(tmp_path / 'out'))
    samples = [dict(key=k, edit_type=t, instruction=f'do {k}',
                    img_path=source_image)
               for k, t in [('1', 'add'), ('2', 'add'), ('3', 'remove'),
                            ('4', 'remove'), ('5', 'add')]]
    scores = feed(metric, samples)
    assert judge.calls[0] == ('Rate adding: do 1.', [(24, 20), (16, 16)])
    # per-sample means rounded to 2 decimals, as upstream: 4.33, 3, 1.67
    assert scores['imgedit/add'] == pytest.approx((4.33 + 3) / 2)
    assert scores['imgedit/remove'] == pytest.approx(1.67)
    assert scores['imgedit/overall'] == pytest.approx((4.33 + 3 + 1.67) / 3)
    assert (scores['imgedit/num_ok'], scores['imgedit/num_malformed'],
            scores['imgedit/num_judge_error']) == (3, 1, 1)
    records = [json.loads(line) for line in
               (tmp_path / 'out' / 'judgements.jsonl').open()]
    assert [r['status'] for r in records] == ['ok', 'ok', 'ok', 'malformed',
                                              'judge_error']
    assert (tmp_path / 'out' / '5.png').is_file()


def test_wise_reports_both_overall_formulas(tmp_path):
    template = tmp_path / 'wise.txt'
    template.write_text('PROMPT: "<prompt>"\nEXPLANATION: "<explanation>"')
    # one prompt per category; C, R, A chosen so WiScores are distinct
    cases = [(5, (2, 2, 2)), (450, (1, 1, 1)), (600, (2, 0, 0)),
             (750, (0, 2, 2)), (850, (1, 2, 0)), (950, (0, 0, 0))]
    replies = [f'Consistency: {c}\nRealism: {r}\nAesthetic Quality: {a}'
               for _, (c, r, a) in cases] + ['Consistency: 9']
    judge = ScriptedJudge(replies)
    metric = WISEMetric(str(template), judge, str(tmp_path / 'out'))
    samples = [dict(prompt_id=pid, prompt=f'p{pid}', explanation='e',
                    subcategory='s') for pid, _ in cases]
    samples.append(dict(prompt_id=7, prompt='p7', explanation='e',
                        subcategory='s'))
    scores = feed(metric, samples)
    wi = [(0.7 * c + 0.2 * r + 0.1 * a) / 2 for _, (c, r, a) in cases]
    names = ['cultural', 'time', 'space', 'biology', 'physics', 'chemistry']
    for name, value in zip(names, wi):
        assert scores[f'wise/{name}'] == pytest.approx(value)
    assert scores['wise/overall_unweighted'] == pytest.approx(sum(wi) / 6)
    weights = [0.4, 0.167, 0.133, 0.1, 0.1, 0.1]
    assert scores['wise/overall_weighted'] == pytest.approx(
        sum(w * v for w, v in zip(weights, wi)))
    assert scores['wise/num_malformed'] == 1
    assert judge.calls[0][0] == 'PROMPT: "p5"\nEXPLANATION: "e"'


def test_gedit_takes_minima_and_averages_group_means(tmp_path, source_image):
    sc, pq = tmp_path / 'sc.txt', tmp_path / 'pq.txt'
    sc.write_text('Edit: <instruction>')
    pq.write_text('Quality?')
    judge = ScriptedJudge([
        '{"score": [8, 6]}', '{"score": [9, 4]}',  # g1: SC 6, PQ 4
        '{"score": [10, 10]}', '{"score": [9, 9]}',  # g1: SC 10, PQ 9
        'nonsense', '[2, 7]', '{"score": [5]}',  # g2: retry, SC 2, PQ 5
        'nonsense', 'still nonsense', '{"score": [5]}',  # malformed
    ])
    metric = GEditMetric(str(sc), str(pq), judge, str(tmp_path / 'out'))
    samples = [dict(key=str(i), task_type=g, instruction=f'i{i}',
                    instruction_language='en', intersection_exist=x,
                    img_path=source_image)
               for i, (g, x) in enumerate([('g1', True), ('g1', False),
                                           ('g2', True), ('g2', True)])]
    scores = feed(metric, samples)
    g1 = [(6, 4), (10, 9)]
    g1_o = sum(math.sqrt(a * b) for a, b in g1) / 2
    assert scores['gedit/sc'] == pytest.approx(((6 + 10) / 2 + 2) / 2)
    assert scores['gedit/pq'] == pytest.approx(((4 + 9) / 2 + 5) / 2)
    assert scores['gedit/overall'] == pytest.approx(
        (g1_o + math.sqrt(10)) / 2)
    assert scores['gedit/sc_intersection'] == pytest.approx((6 + 2) / 2)
    assert scores['gedit/num_malformed'] == 1
    # the edited image is resized to the source's size before judging
    assert judge.calls[0] == ('Edit: i0', [(24, 20), (24, 20)])
    assert judge.calls[1] == ('Quality?', [(24, 20)])
    assert (tmp_path / 'out' / 'fullset' / 'g2' / 'en' /
            '2_SRCIMG.png').is_file()


def test_judge_template_must_hold_its_placeholders(tmp_path):
    template = tmp_path / 'wise.txt'
    template.write_text('no placeholders')
    with pytest.raises(ValueError, match='lacks the placeholders'):
        WISEMetric(str(template), None, str(tmp_path))


# -- the HTTP client, against a server on 127.0.0.1 ---------------------------
class Handler(BaseHTTPRequestHandler):
    requests = []
    statuses = []
    reply = 'Yes, it is.'

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        Handler.requests.append((self.path, self.headers['Authorization'],
                                 body))
        status = Handler.statuses.pop(0) if Handler.statuses else 200
        self.send_response(status)
        self.end_headers()
        if status == 200:
            self.wfile.write(json.dumps({'choices': [{'message': {
                'content': Handler.reply}}]}).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.requests, Handler.statuses = [], []
    yield f'http://127.0.0.1:{httpd.server_port}/v1'
    httpd.shutdown()


def test_openai_compatible_judge_request_and_retry(server, monkeypatch):
    monkeypatch.setenv('TEST_JUDGE_KEY', 'sk-test')
    judge = OpenAICompatibleJudge('gpt-4o-2024-05-13', base_url=server,
                                  api_key_env='TEST_JUDGE_KEY', backoff=0,
                                  system_prompt='be strict')
    Handler.statuses = [500]
    reply = judge('rate this', [Image.new('RGB', (4, 4))])
    assert reply == 'Yes, it is.'
    assert len(Handler.requests) == 2  # one retry after the 500
    path, auth, body = Handler.requests[-1]
    assert path == '/v1/chat/completions' and auth == 'Bearer sk-test'
    assert body['model'] == 'gpt-4o-2024-05-13' and body['temperature'] == 0
    assert body['messages'][0] == dict(role='system', content='be strict')
    text, image = body['messages'][1]['content']
    assert text == dict(type='text', text='rate this')
    assert image['image_url']['url'].startswith('data:image/png;base64,')
    assert JudgeVQA(judge)(Image.new('RGB', (4, 4)), 'Is it?') == 'yes'


def test_judge_errors_are_raised_as_judge_error(server, monkeypatch):
    monkeypatch.delenv('NO_SUCH_KEY', raising=False)
    with pytest.raises(JudgeError, match='NO_SUCH_KEY'):
        OpenAICompatibleJudge('m', base_url=server,
                              api_key_env='NO_SUCH_KEY')('x')
    Handler.statuses = [400]
    with pytest.raises(JudgeError, match='HTTP 400'):
        OpenAICompatibleJudge('m', base_url=server, api_key_env=None,
                              backoff=0)('x')
    assert len(Handler.requests) == 1  # a 400 is not retried
