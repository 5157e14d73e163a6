# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The worker extension stops where the template says the turn ends and counts tokens right.

Runs fschat 0.2.36's own generate_stream in-process on the tiny gemma-2
fixture, whose weights make it answer "OK!" and then emit <end_of_turn>.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..', '..', '..', '..')
sys.path.insert(0, os.path.join(ROOT, 'roles', 'image', 'files'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'fixtures', 'models'))


def _import_torch_dynamo():
    # Ansible (loaded by the pytest plugins) replaces sys.intern with a callable
    # object, and torch._dynamo, which transformers' model code imports, refuses
    # to register its polyfill for anything but a function.
    patched = sys.intern
    original = getattr(type(patched), 'unpatched_implementation', None)
    if original is not None:
        sys.intern = original
    try:
        import torch._dynamo  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    finally:
        sys.intern = patched


_import_torch_dynamo()
import make_tiny_gemma  # noqa: E402  pylint: disable=wrong-import-position
from slm_fastchat import model_worker, templates  # noqa: E402  pylint: disable=wrong-import-position

from fastchat.conversation import get_conv_template  # noqa: E402  pylint: disable=wrong-import-position
from fastchat.serve.inference import generate_stream  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope='module')
def tiny_gemma(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = str(tmp_path_factory.mktemp('tiny-gemma'))
    make_tiny_gemma.main(path)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def request(conv, max_tokens):
    """What FastChat's API server sends the worker for one chat message."""
    conv.append_message(conv.roles[0], 'hello')
    conv.append_message(conv.roles[1], None)
    return {'prompt': conv.get_prompt(), 'temperature': 0, 'max_new_tokens': max_tokens, 'echo': False,
            'stop': conv.stop_str, 'stop_token_ids': conv.stop_token_ids}


def run(generate, model, tokenizer, params):
    return list(generate(model, tokenizer, dict(params), 'cpu', 1024, 1))


def gemma_conv():
    templates.register()
    return get_conv_template('gemma-2')


def test_stock_fastchat_runs_past_end_of_turn(tiny_gemma):
    """The bug being fixed (FastChat issue 3448): <end_of_turn> is not a stop token."""
    model, tokenizer = tiny_gemma
    final = run(generate_stream, model, tokenizer, request(gemma_conv(), 10))[-1]
    assert final['finish_reason'] == 'length'
    assert final['text'].startswith('OK!') and final['text'] != 'OK!'


def test_reply_ends_at_end_of_turn(tiny_gemma):
    model, tokenizer = tiny_gemma
    conv = gemma_conv()
    generate, stop_ids = model_worker.adapt(generate_stream, tokenizer, conv)
    assert stop_ids == [tokenizer.convert_tokens_to_ids('<end_of_turn>')]
    outputs = run(generate, model, tokenizer, request(conv, 10))
    final = outputs[-1]
    assert final['text'] == 'OK!'
    assert final['finish_reason'] == 'stop'
    assert final['usage']['completion_tokens'] == 3
    assert not any('<end_of_turn>' in output['text'] or 'end_of_turn' in output['text'] for output in outputs)


def test_completion_tokens_count_every_token_on_max_tokens(tiny_gemma):
    model, tokenizer = tiny_gemma
    conv = gemma_conv()
    params = request(conv, 2)
    assert run(generate_stream, model, tokenizer, params)[-1]['usage']['completion_tokens'] == 1  # the bug
    generate, _stop_ids = model_worker.adapt(generate_stream, tokenizer, conv)
    final = run(generate, model, tokenizer, params)[-1]
    assert (final['text'], final['finish_reason']) == ('OK', 'length')
    assert final['usage']['completion_tokens'] == 2
    assert final['usage']['total_tokens'] == final['usage']['prompt_tokens'] + 2


def test_completion_tokens_count_the_tokens_of_a_stop_string(tiny_gemma):
    model, tokenizer = tiny_gemma
    conv = gemma_conv()
    params = dict(request(conv, 10), stop=['K'])
    assert run(generate_stream, model, tokenizer, params)[-1]['usage']['completion_tokens'] == 1  # the bug
    generate, _stop_ids = model_worker.adapt(generate_stream, tokenizer, conv)
    final = run(generate, model, tokenizer, params)[-1]
    # "O" and "K" were generated; the reply is cut before the stop string.
    assert (final['text'], final['finish_reason']) == ('O', 'stop')
    assert final['usage']['completion_tokens'] == 2


def prefill_ids(model, generate, tokenizer, params, context_len):
    """The token ids the model is first called with (the prompt it sees), running ``generate``."""
    seen = []

    def hook(_module, args, kwargs):
        ids = kwargs.get('input_ids', args[0] if args else None)
        if not seen:
            seen.append(ids[0].tolist())
    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        list(generate(model, tokenizer, dict(params), 'cpu', context_len, 1))
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize('room_left', [0, 1, 5])
def test_the_model_sees_the_whole_prompt_whatever_max_tokens_is(tiny_gemma, room_left):
    """The API server asks for at most what the context leaves; the prompt must reach the model whole."""
    model, tokenizer = tiny_gemma
    conv = gemma_conv()
    params = request(conv, 1)
    prompt_ids = tokenizer(params['prompt']).input_ids
    context_len = len(prompt_ids) + 8
    params['max_new_tokens'] = context_len - len(prompt_ids) - room_left
    generate, _stop_ids = model_worker.adapt(generate_stream, tokenizer, conv)
    assert prefill_ids(model, generate, tokenizer, params, context_len) == prompt_ids
    if room_left == 0:
        # fschat's own truncation, the bug: the first prompt token (<bos>) is cut.
        assert prefill_ids(model, generate_stream, tokenizer, params, context_len) == prompt_ids[1:]


def test_other_generate_functions_keep_their_usage():
    def generate(*_args, **_kwargs):
        yield {'text': 'x', 'usage': {'prompt_tokens': 1, 'completion_tokens': 4, 'total_tokens': 5},
               'finish_reason': 'length'}
    conv = gemma_conv()
    wrapped, _stop_ids = model_worker.adapt(generate, _NoTokens(), conv, stock_generate=generate_stream)
    assert list(wrapped(None, None, {}))[-1]['usage']['completion_tokens'] == 4


class _NoTokens:
    @staticmethod
    def encode(text, add_special_tokens=False):
        return [ord(char) for char in text]


@pytest.mark.parametrize('argv, message', [
    (['--model-path=/models/x'], '--conv-template is required'),
    (['--conv-template=gemma-3'], "unknown --conv-template 'gemma-3'"),
    (['--conv-template', 'gemma-2', '--ssl'], '--ssl is not supported'),
])
def test_worker_refuses_bad_arguments_before_loading_anything(argv, message):
    with pytest.raises(SystemExit, match=message):
        model_worker.main(argv)


@pytest.mark.parametrize('family, bos, doubled', [
    # What the demo's GGUF conversion did before scripts/prepare_demo_model.py fixed it.
    ('smollm2', '<|im_start|>', True),
    ('smollm2', None, False),
    ('llama-3', '<|begin_of_text|>', False),
    ('gemma-2', '<bos>', False),
])
def test_a_bos_token_the_template_already_writes_is_caught(family, bos, doubled):
    import char_tokenizer  # pylint: disable=import-outside-toplevel
    templates.register()
    specials = ['<|im_start|>', '<|im_end|>', '<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>',
                '<|eot_id|>', '<bos>', '<eos>', '<start_of_turn>', '<end_of_turn>']
    tokenizer = char_tokenizer.build(specials, bos=bos)
    assert model_worker.doubled_bos(tokenizer, get_conv_template(family)) is doubled


class _DrainingWorker(object):
    """Stands in for FastChat's worker object (no model): the drain routes read only these members."""

    def __init__(self, in_flight=2):
        import threading  # pylint: disable=import-outside-toplevel
        self.draining = threading.Event()
        self.running = in_flight
        self.drains = 0

    def drain(self):
        self.drains += 1
        self.draining.set()

    def in_flight(self):
        return self.running


def _drain_app(worker):
    from fastapi import FastAPI  # pylint: disable=import-outside-toplevel
    from fastapi.testclient import TestClient  # pylint: disable=import-outside-toplevel
    app = FastAPI()

    @app.post('/worker_get_status')
    async def status():
        return {'model_names': ['m'], 'speed': 1, 'queue_length': 0}

    model_worker.add_drain_routes(app, lambda: worker)
    return TestClient(app)


def test_a_draining_worker_fails_the_controllers_status_probe_and_reports_its_requests():
    """The controller drops a worker whose /worker_get_status is not 200 (its refresh_all_workers)."""
    worker = _DrainingWorker(in_flight=2)
    client = _drain_app(worker)
    assert client.post('/worker_get_status').status_code == 200
    assert client.get('/slm/drain').json() == {'draining': False, 'in_flight': 2}
    assert client.post('/slm/drain').json() == {'draining': True, 'in_flight': 2}
    assert client.post('/worker_get_status').status_code == 503
    worker.running = 0
    assert client.get('/slm/drain').json() == {'draining': True, 'in_flight': 0}


def test_a_draining_worker_stops_heartbeats_and_does_not_register_again():
    """After a drain the controller's exist=False answer must not bring the worker back."""
    calls = []

    class Base(object):  # pylint: disable=too-few-public-methods
        def __init__(self, *args, **kwargs):
            pass

        def send_heart_beat(self):
            calls.append('heartbeat')

    worker = object.__new__(model_worker.worker_class(Base))
    import threading  # pylint: disable=import-outside-toplevel
    worker.draining = threading.Event()
    worker.send_heart_beat()
    worker.draining.set()
    worker.send_heart_beat()
    # Would post to the controller (and retry until it answers) were it not draining.
    worker.controller_addr = 'http://127.0.0.1:9'
    worker.register_to_controller()
    assert calls == ['heartbeat']


def test_registration_retries_until_the_controller_answers(monkeypatch):
    """FastChat's registration had no timeout: an unreachable controller hung the worker before it served."""
    import requests  # pylint: disable=import-outside-toplevel
    answers = [requests.ConnectionError('down'), type('R', (), {'status_code': 500})(),
               type('R', (), {'status_code': 200})()]
    posts = []

    def post(url, timeout=None, json=None):
        posts.append((url, timeout, json['worker_name']))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(requests, 'post', post)
    monkeypatch.setattr(model_worker.time, 'sleep', lambda seconds: None)

    class Base(object):  # pylint: disable=too-few-public-methods
        controller_addr = 'http://controller:21001'
        worker_addr = 'http://10.0.0.5:21002'
        multimodal = False

        def get_status(self):
            return {'model_names': ['m'], 'speed': 1, 'queue_length': 0}

    worker = object.__new__(model_worker.worker_class(Base))
    import threading  # pylint: disable=import-outside-toplevel
    worker.draining = threading.Event()
    worker.register_to_controller()
    assert posts == [('http://controller:21001/register_worker', 10, 'http://10.0.0.5:21002')] * 3
