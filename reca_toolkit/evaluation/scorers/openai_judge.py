"""A multimodal LLM judge behind any OpenAI-compatible chat endpoint.

OpenAI itself, Azure-style gateways, or a local vLLM / SGLang server
hosting Qwen2.5-VL: anything that serves ``POST {base_url}/chat/completions``
with image parts as data URLs. Plain ``urllib``, so no client package is
needed; the API key is read from an environment variable when the first
request is made, never stored in configs or cards.
"""
import base64
import io
import json
import os
import re
import time
import urllib.error
import urllib.request

from reca_toolkit.registry import SCORERS


class JudgeError(RuntimeError):
    """A request that failed after every retry."""


def image_data_url(image, fmt='PNG'):
    buffer = io.BytesIO()
    image.convert('RGB').save(buffer, format=fmt)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'data:image/{fmt.lower()};base64,{data}'


@SCORERS.register_module()
class OpenAICompatibleJudge:
    """``judge(text, images) -> reply text``.

    Args:
        model: the exact model string, which cards record (RecA: WISE
            ``gpt-4o-2024-05-13``, ImgEdit ``gpt-4o-2024-08-06``, GEdit
            ``gpt-4.1-2025-04-14``).
        base_url: the API root, ending before ``/chat/completions``.
        api_key_env: environment variable holding the key; None for servers
            that take none.
        temperature, max_tokens: sampling settings sent with each request.
        system_prompt: an optional system message.
        retries: attempts after a failed request (network errors, HTTP 429
            and 5xx), with exponential back-off from ``backoff`` seconds.
        timeout: seconds per request.
    """

    def __init__(self, model, base_url='https://api.openai.com/v1',
                 api_key_env='OPENAI_API_KEY', temperature=0.0,
                 max_tokens=2000, system_prompt=None, retries=3, backoff=2.0,
                 timeout=120):
        self.model = model
        self.base_url = base_url.rstrip('/')
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout

    def info(self):
        return dict(name='OpenAICompatibleJudge', model=self.model,
                    base_url=self.base_url, temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    system_prompt=self.system_prompt)

    def payload(self, text, images):
        content = [dict(type='text', text=text)] + [
            dict(type='image_url', image_url=dict(url=image_data_url(i)))
            for i in images]
        messages = [dict(role='user', content=content)]
        if self.system_prompt:
            messages.insert(0, dict(role='system', content=self.system_prompt))
        return dict(model=self.model, messages=messages,
                    temperature=self.temperature, max_tokens=self.max_tokens)

    def headers(self):
        headers = {'Content-Type': 'application/json'}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise JudgeError(f'the judge needs an API key in the '
                                 f'environment variable {self.api_key_env}')
            headers['Authorization'] = f'Bearer {key}'
        return headers

    def __call__(self, text, images=()):
        request = urllib.request.Request(
            f'{self.base_url}/chat/completions',
            data=json.dumps(self.payload(text, images)).encode(),
            headers=self.headers(), method='POST')
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request,
                                            timeout=self.timeout) as resp:
                    body = json.loads(resp.read().decode())
                return body['choices'][0]['message']['content']
            except urllib.error.HTTPError as e:
                error = f'HTTP {e.code}: {e.read()[:300]!r}'
                if e.code != 429 and e.code < 500:
                    break
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                error = f'{type(e).__name__}: {e}'
            except (ValueError, KeyError, IndexError, TypeError) as e:
                error = f'unexpected response ({type(e).__name__}: {e})'
                break
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt)
        raise JudgeError(f'{self.base_url} model {self.model}: {error}')


@SCORERS.register_module()
class JudgeVQA:
    """``vqa(image, question) -> answer``: a chat judge asked DPG-Bench's
    yes/no questions, its reply normalised to a bare lower-case word
    (mPLUG, DPG's VQA model, answers ``yes`` / ``no``).

    Args:
        judge: an :class:`OpenAICompatibleJudge` config.
        instruction: appended to each question.
    """

    def __init__(self, judge, instruction='Answer with yes or no only.'):
        self.judge_cfg = judge
        self.judge = SCORERS.build(judge) if isinstance(judge, dict) \
            else judge
        self.instruction = instruction

    def info(self):
        return dict(name='JudgeVQA', instruction=self.instruction,
                    judge=self.judge.info() if hasattr(self.judge, 'info')
                    else None)

    def __call__(self, image, question):
        reply = self.judge(f'{question} {self.instruction}', [image])
        word = re.match(r'\W*(\w+)', reply.lower())
        return word.group(1) if word else ''
