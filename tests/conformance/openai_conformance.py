# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenAI API conformance of an slm.fastchat endpoint, one test per rule (issue 9).

A test module imports everything from here and defines the fixture
``endpoint``: an :class:`Endpoint` (base URL without ``/v1``, key, CA file or
None). The endpoint serves the two tiny fixture models (override the
fixtures to name others):

- ``chat_model``: a model that never ends its turn by itself (every reply runs
  to max_tokens at temperature 0): tests/fixtures/models/make_tiny_model.py;
- ``stop_model``: a model that answers "OK!" and ends its turn:
  tests/fixtures/models/make_tiny_gemma.py.

Used by tests/unit/roles/image/test_openai_api.py (the API server alone, in
process) and molecule/e2e/tests/test_conformance.py (the deployment, through
nginx and TLS). Requests go through the official ``openai`` client where it
can send them, and raw HTTP (``httpx``, as the client uses) where the test is
about bytes on the wire.
"""

import collections
import json
import re

import httpx
import openai
import pytest

Endpoint = collections.namedtuple('Endpoint', 'base key ca')

SECRET_LEAKS = re.compile(r'Traceback|\.py\b|/usr/|/opt/|site-packages|File "')


def client_for(endpoint, key=None):
    return openai.OpenAI(base_url=endpoint.base + '/v1', api_key=key or endpoint.key, max_retries=0, timeout=120,
                         http_client=openai.DefaultHttpxClient(verify=endpoint.ca or True))


def http_for(endpoint):
    return httpx.Client(base_url=endpoint.base, verify=endpoint.ca or True, timeout=120)


@pytest.fixture(scope='module')
def chat_model():
    return 'tiny-llama'


@pytest.fixture(scope='module')
def stop_model():
    return 'tiny-gemma'


@pytest.fixture(scope='module')
def client(endpoint):
    return client_for(endpoint)


@pytest.fixture(scope='module')
def http(endpoint):
    with http_for(endpoint) as session:
        yield session


def auth(endpoint):
    return {'Authorization': 'Bearer ' + endpoint.key}


def assert_error_envelope(response, status, code=None, param=None):
    assert response.status_code == status, response.text
    assert response.headers['content-type'].startswith('application/json'), response.headers
    body = response.json()
    assert set(body) == {'error'}, body
    assert set(body['error']) == {'message', 'type', 'param', 'code'}, body
    assert body['error']['message'] and not SECRET_LEAKS.search(body['error']['message']), body
    if code is not None:
        assert body['error']['code'] == code, body
    if param is not None:
        assert body['error']['param'] == param, body
    return body['error']


def chat(model, content='hello', **kwargs):
    return dict({'model': model, 'messages': [{'role': 'user', 'content': content}]}, **kwargs)


def sse_events(response):
    """The data of each server-sent event, parsed; the final [DONE] as the string."""
    events = []
    for line in response.iter_lines():
        if line.startswith('data: '):
            data = line[len('data: '):]
            events.append(data if data == '[DONE]' else json.loads(data))
    return events


# --- 1. Exposure

@pytest.mark.parametrize('method, path', [
    ('POST', '/api/v1/chat/completions'),
    ('POST', '/api/v1/token_check'),
    ('GET', '/docs'),
    ('GET', '/redoc'),
    ('GET', '/openapi.json'),
    ('GET', '/list_models'),
    ('POST', '/v1/nonexistent'),
    ('GET', '/'),
])
def test_nothing_but_the_api_is_served(http, endpoint, chat_model, method, path):
    body = chat(chat_model) if method == 'POST' else None
    for headers in ({}, auth(endpoint)):
        response = http.request(method, path, json=body, headers=headers)
        assert_error_envelope(response, 404)


@pytest.mark.parametrize('method, path', [
    ('GET', '/v1/models'),
    ('GET', '/v1/models/{model}'),
    ('POST', '/v1/chat/completions'),
    ('POST', '/v1/completions'),
])
@pytest.mark.parametrize('header', [None, 'Bearer sk-not-a-key-0000000000', 'Basic Zm9vOmJhcg==', 'Bearer'])
def test_every_api_route_needs_a_valid_key(http, chat_model, method, path, header):
    body = {'model': chat_model, 'prompt': 'hi', 'messages': [{'role': 'user', 'content': 'hi'}]}
    if path == '/v1/chat/completions':
        body = chat(chat_model)
    elif path == '/v1/completions':
        body = {'model': chat_model, 'prompt': 'hi'}
    response = http.request(method, path.format(model=chat_model), json=body if method == 'POST' else None,
                            headers={'Authorization': header} if header else {})
    assert_error_envelope(response, 401)


def test_health_needs_no_key_and_says_only_that_it_lives(http):
    response = http.get('/health')
    assert response.status_code == 200
    assert response.json() == {'status': 'ok'}
    # Load balancers often check with HEAD.
    assert http.head('/health').status_code == 200


@pytest.mark.parametrize('path', ['/v1', '/v1/models/x%00', '/v1/models%00'])
def test_odd_paths_get_openai_errors(http, endpoint, path):
    response = http.get(path, headers=auth(endpoint))
    assert response.status_code in (400, 404), response.text
    assert_error_envelope(response, response.status_code)


# --- 2. Errors

def test_wrong_key_raises_authentication_error_with_code(endpoint):
    with pytest.raises(openai.AuthenticationError) as caught:
        client_for(endpoint, 'sk-not-a-valid-key-000000').models.list()
    assert caught.value.code == 'invalid_api_key'
    assert caught.value.type == 'invalid_request_error'


def test_unknown_model_is_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(**chat('no-such-model'))
    assert caught.value.code == 'model_not_found'
    assert caught.value.param == 'model'
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve('no-such-model')
    assert caught.value.code == 'model_not_found'


def test_prompt_longer_than_the_context_is_context_length_exceeded(client, chat_model):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**chat(chat_model, 'word ' * 5000, max_tokens=4))
    assert caught.value.code == 'context_length_exceeded'
    assert caught.value.type == 'invalid_request_error'
    assert caught.value.param == 'messages'


@pytest.mark.parametrize('raw', [
    b'{not json', b'[1, 2]', b'',
    b'{"model": "m", "messages": ' + b'[' * 100000 + b']' * 100000 + b'}',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
])
def test_a_body_that_is_not_a_json_object_is_400(http, endpoint, chat_model, raw):
    response = http.post('/v1/chat/completions', content=raw,
                         headers=dict(auth(endpoint), **{'Content-Type': 'application/json'}))
    assert_error_envelope(response, 400, code='invalid_json')
    # The connection and the server are fine for the next client.
    assert http.post('/v1/chat/completions', json=chat(chat_model, max_tokens=1),
                     headers=auth(endpoint)).status_code == 200


def test_wrong_method_is_an_openai_error(http, endpoint):
    response = http.delete('/v1/models', headers=auth(endpoint))
    assert_error_envelope(response, 405)
    assert response.headers['Allow'] == 'GET'


# --- 3. Requests

def _bad(client, **request):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert not SECRET_LEAKS.search(str(caught.value)), caught.value
    assert caught.value.type == 'invalid_request_error'
    return caught.value


@pytest.mark.parametrize('messages, param, code', [
    ([], 'messages', 'empty_array'),
    ('a string', 'messages', 'invalid_type'),
    ([{'role': 'user'}], 'messages[0].content', 'missing_required_parameter'),
    ([{'role': 'wizard', 'content': 'hi'}], 'messages[0].role', 'invalid_value'),
    ([{'content': 'hi'}], 'messages[0].role', 'missing_required_parameter'),
    ([{'role': 'user', 'content': [
        {'type': 'text', 'text': 'look'}, {'type': 'image_url', 'image_url': {'url': 'data:,'}}]}],
     'messages[0].content[1].type', 'unsupported_content_type'),
    ([{'role': 'system', 'content': [{'type': 'input_audio', 'input_audio': {}}]},
      {'role': 'user', 'content': 'hi'}], 'messages[0].content[0].type', 'unsupported_content_type'),
    ([{'role': 'tool', 'content': '42'}], 'messages[0].tool_call_id', 'missing_required_parameter'),
    ([{'role': 'user', 'content': 7}], 'messages[0].content', 'invalid_type'),
])
def test_bad_messages_are_400_naming_the_field(client, chat_model, messages, param, code):
    error = _bad(client, model=chat_model, messages=messages)
    assert (error.param, error.code) == (param, code)


@pytest.mark.parametrize('messages', [
    [{'role': 'developer', 'content': 'Answer briefly.'}, {'role': 'user', 'content': 'hi'}],
    [{'role': 'user', 'content': 'hi'},
     {'role': 'assistant', 'content': [{'type': 'text', 'text': 'Hello.'}, {'type': 'text', 'text': 'Ask.'}]},
     {'role': 'user', 'content': 'ok'}],
    [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': None, 'refusal': 'No.'},
     {'role': 'user', 'content': 'ok'}],
    [{'role': 'user', 'content': 'what is 6*7?'}, {'role': 'tool', 'content': '42', 'tool_call_id': 'call_1'}],
    [{'role': 'system', 'content': [{'type': 'text', 'text': 'Be brief.'}]},
     {'role': 'user', 'content': [{'type': 'text', 'text': 'hi'}], 'name': 'ann'}],
])
def test_valid_openai_messages_are_answered(client, chat_model, messages):
    reply = client.chat.completions.create(model=chat_model, messages=messages, max_tokens=3, temperature=0)
    assert reply.choices[0].message.role == 'assistant'
    assert reply.usage.completion_tokens == 3


def test_text_parts_are_rendered_as_their_text(client, chat_model):
    def prompt_tokens(system):
        return client.chat.completions.create(
            model=chat_model, max_tokens=1, temperature=0,
            messages=[{'role': 'system', 'content': system}, {'role': 'user', 'content': 'hi'}]).usage.prompt_tokens
    as_text = prompt_tokens('Be brief. Be kind.')
    assert prompt_tokens([{'type': 'text', 'text': 'Be brief. Be kind.'}]) == as_text
    # Two parts are joined by a newline, one token here at most; a Python
    # list's repr would add brackets, quotes and the part's keys.
    assert prompt_tokens([{'type': 'text', 'text': 'Be brief.'}, {'type': 'text', 'text': 'Be kind.'}]) <= as_text + 2


@pytest.mark.parametrize('extra, param, code', [
    ({'temperature': 2.5}, 'temperature', 'invalid_value'),
    ({'temperature': -0.1}, 'temperature', 'invalid_value'),
    ({'temperature': 'hot'}, 'temperature', 'invalid_type'),
    ({'top_p': 1.5}, 'top_p', 'invalid_value'),
    ({'n': 0}, 'n', 'invalid_value'),
    ({'n': 1000}, 'n', 'invalid_value'),
    ({'presence_penalty': 3}, 'presence_penalty', 'invalid_value'),
    ({'frequency_penalty': -2.5}, 'frequency_penalty', 'invalid_value'),
    ({'max_tokens': 0}, 'max_tokens', 'invalid_value'),
    ({'max_completion_tokens': -1}, 'max_completion_tokens', 'invalid_value'),
    ({'max_tokens': 100000}, 'max_tokens', 'context_length_exceeded'),
    ({'max_completion_tokens': 100000}, 'max_completion_tokens', 'context_length_exceeded'),
    ({'stop': ['a', 'b', 'c', 'd', 'e']}, 'stop', 'invalid_value'),
    ({'stream_options': {'include_usage': True}}, 'stream_options', 'invalid_value'),
])
def test_out_of_range_parameters_are_400_naming_them(client, chat_model, extra, param, code):
    error = _bad(client, **chat(chat_model, **extra))
    assert (error.param, error.code) == (param, code)


@pytest.mark.parametrize('extra, param', [
    ({'tools': [{'type': 'function', 'function': {'name': 'f', 'parameters': {'type': 'object'}}}]}, 'tools'),
    ({'tool_choice': 'required'}, 'tool_choice'),
    ({'response_format': {'type': 'json_object'}}, 'response_format'),
    ({'response_format': {'type': 'json_schema', 'json_schema': {'name': 'x', 'schema': {}}}}, 'response_format'),
    ({'logprobs': True}, 'logprobs'),
    ({'top_logprobs': 3}, 'top_logprobs'),
    ({'frequency_penalty': 0.5}, 'frequency_penalty'),
    ({'presence_penalty': -1}, 'presence_penalty'),
    ({'seed': 42}, 'seed'),
    ({'logit_bias': {'1': 5}}, 'logit_bias'),
    ({'reasoning_effort': 'low'}, 'reasoning_effort'),
])
def test_parameters_the_backend_cannot_honour_are_refused_by_name(client, chat_model, extra, param):
    error = _bad(client, **chat(chat_model, **extra))
    assert (error.param, error.code) == (param, 'unsupported_parameter')


def test_unknown_parameters_are_refused(http, endpoint, chat_model):
    response = http.post('/v1/chat/completions', json=chat(chat_model, temprature=0.5), headers=auth(endpoint))
    assert_error_envelope(response, 400, code='unknown_parameter', param='temprature')


@pytest.mark.parametrize('extra', [
    {'frequency_penalty': 0, 'presence_penalty': 0, 'logprobs': False, 'tools': [], 'tool_choice': 'none',
     'response_format': {'type': 'text'}, 'seed': None, 'user': 'user-1', 'n': 1, 'stop': None},
])
def test_parameters_at_their_neutral_values_are_accepted(client, chat_model, extra):
    reply = client.chat.completions.create(**chat(chat_model, max_tokens=2, temperature=0, **extra))
    assert reply.usage.completion_tokens == 2


def test_max_completion_tokens_is_honoured(client, chat_model):
    reply = client.chat.completions.create(**chat(chat_model, max_completion_tokens=5, temperature=0))
    assert reply.choices[0].finish_reason == 'length'
    assert reply.usage.completion_tokens == 5


def test_stop_sequences_end_the_reply_without_the_stop_text(client, stop_model):
    reply = client.chat.completions.create(**chat(stop_model, stop=['K'], max_tokens=10, temperature=0))
    assert reply.choices[0].message.content == 'O'
    assert reply.choices[0].finish_reason == 'stop'
    # "O" and "K" were generated.
    assert reply.usage.completion_tokens == 2


def test_a_reply_sent_back_as_the_client_returned_it_is_accepted(client, stop_model):
    messages = [{'role': 'user', 'content': 'hi'}]
    reply = client.chat.completions.create(model=stop_model, messages=messages, max_tokens=5, temperature=0)
    messages += [reply.choices[0].message.model_dump(), {'role': 'user', 'content': 'again'}]
    again = client.chat.completions.create(model=stop_model, messages=messages, max_tokens=5, temperature=0)
    assert again.choices[0].message.content == 'OK!'


@pytest.mark.parametrize('prompt', ['', ['']])
def test_an_empty_completions_prompt_is_answered_or_refused_by_name(http, endpoint, chat_model, prompt):
    # Generated from the tokenizer's BOS where it adds one (the tiny models do);
    # refused naming 'prompt' where nothing is left to feed the model (SmolLM2).
    response = http.post('/v1/completions', json={'model': chat_model, 'prompt': prompt, 'max_tokens': 2},
                         headers=auth(endpoint))
    if response.status_code == 200:
        assert response.json()['usage']['completion_tokens'] == 2
    else:
        assert_error_envelope(response, 400, code='invalid_value', param='prompt')


# --- 4. Responses

def test_every_stream_chunk_has_openais_fields(http, endpoint, chat_model):
    request = chat(chat_model, max_tokens=6, temperature=0, stream=True)
    with http.stream('POST', '/v1/chat/completions', json=request, headers=auth(endpoint)) as response:
        assert response.status_code == 200
        assert response.headers['content-type'].startswith('text/event-stream')
        events = sse_events(response)
    assert events[-1] == '[DONE]'
    chunks = events[:-1]
    assert len(chunks) >= 3
    assert len({chunk['id'] for chunk in chunks}) == 1
    for chunk in chunks:
        assert chunk['object'] == 'chat.completion.chunk', chunk
        assert isinstance(chunk['created'], int) and chunk['model'] == chat_model, chunk
        assert chunk['id'].startswith('chatcmpl-')
        assert 'usage' not in chunk, chunk
        assert [choice['index'] for choice in chunk['choices']] == [0], chunk
    assert chunks[0]['choices'][0]['delta'] == {'role': 'assistant', 'content': ''}
    assert [chunk['choices'][0]['finish_reason'] for chunk in chunks][-1] == 'length'


def test_include_usage_adds_a_final_usage_chunk(client, chat_model):
    stream = client.chat.completions.create(**chat(chat_model, max_tokens=4, temperature=0, stream=True,
                                                   stream_options={'include_usage': True}))
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 4
    plain = client.chat.completions.create(**chat(chat_model, max_tokens=4, temperature=0))
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_continuous_usage_stats_give_the_counts_so_far_in_every_chunk(client, chat_model):
    """vLLM's ``stream_options.continuous_usage_stats``, which load testers such as guidellm send with every
    streamed request: each chunk carries usage, completion tokens never fall, the last chunk's is exact."""
    stream = client.chat.completions.create(**chat(chat_model, max_tokens=4, temperature=0, stream=True,
                                                   stream_options={'include_usage': True,
                                                                   'continuous_usage_stats': True}))
    chunks = list(stream)
    counts = [chunk.usage.completion_tokens for chunk in chunks]
    assert counts == sorted(counts) and counts[0] < 4 and counts[-1] == 4
    assert len({chunk.usage.prompt_tokens for chunk in chunks}) == 1
    assert chunks[-1].choices == []


def test_stream_chunks_carry_only_their_own_tokens(client, chat_model):
    request = chat(chat_model, max_tokens=8, temperature=0)
    whole = client.chat.completions.create(**request).choices[0].message.content
    pieces = [chunk.choices[0].delta.content for chunk in client.chat.completions.create(stream=True, **request)
              if chunk.choices and chunk.choices[0].delta.content]
    assert ''.join(pieces) == whole
    assert len(pieces) >= 4


def test_n_choices_count_the_prompt_once(client, chat_model):
    one = client.chat.completions.create(**chat(chat_model, max_tokens=3, temperature=0))
    two = client.chat.completions.create(**chat(chat_model, max_tokens=3, temperature=0, n=2))
    assert [choice.index for choice in two.choices] == [0, 1]
    assert two.usage.prompt_tokens == one.usage.prompt_tokens
    assert two.usage.completion_tokens == 6
    stream = client.chat.completions.create(**chat(chat_model, max_tokens=3, temperature=0, n=2, stream=True,
                                                   stream_options={'include_usage': True}))
    chunks = list(stream)
    assert {chunk.choices[0].index for chunk in chunks if chunk.choices} == {0, 1}
    assert chunks[-1].usage.prompt_tokens == one.usage.prompt_tokens


def test_models_list_and_retrieve(client, chat_model, stop_model):
    listed = client.models.list()
    assert {chat_model, stop_model} <= {model.id for model in listed.data}
    for model in listed.data:
        assert model.object == 'model' and isinstance(model.created, int) and model.owned_by
    retrieved = client.models.retrieve(chat_model)
    assert (retrieved.id, retrieved.object) == (chat_model, 'model')


def test_chat_completion_object_has_openais_fields(http, endpoint, stop_model):
    response = http.post('/v1/chat/completions', json=chat(stop_model, max_tokens=10, temperature=0),
                         headers=auth(endpoint))
    body = response.json()
    assert body['object'] == 'chat.completion' and body['id'].startswith('chatcmpl-')
    assert isinstance(body['created'], int) and body['model'] == stop_model
    assert body['choices'] == [{'index': 0, 'finish_reason': 'stop', 'logprobs': None,
                                'message': {'role': 'assistant', 'content': 'OK!', 'refusal': None}}]
    assert body['usage'] == {'prompt_tokens': body['usage']['prompt_tokens'], 'completion_tokens': 3,
                             'total_tokens': body['usage']['prompt_tokens'] + 3}


def test_completions_answer_in_openais_shape(client, chat_model):
    reply = client.completions.create(model=chat_model, prompt=['one', 'two'], max_tokens=3, temperature=0, n=2)
    assert reply.object == 'text_completion'
    assert [choice.index for choice in reply.choices] == [0, 1, 2, 3]
    assert reply.usage.completion_tokens == 12
    single = client.completions.create(model=chat_model, prompt='one', max_tokens=3, temperature=0)
    assert single.usage.prompt_tokens * 2 <= reply.usage.prompt_tokens + 2
    echoed = client.completions.create(model=chat_model, prompt='one', max_tokens=3, temperature=0, echo=True)
    assert echoed.choices[0].text == 'one' + single.choices[0].text
    stream = list(client.completions.create(model=chat_model, prompt='one', max_tokens=3, temperature=0,
                                            stream=True, stream_options={'include_usage': True}))
    assert ''.join(chunk.choices[0].text for chunk in stream if chunk.choices) == single.choices[0].text
    assert stream[-1].usage.completion_tokens == 3


def test_completions_default_to_16_tokens(client, chat_model):
    reply = client.completions.create(model=chat_model, prompt='one', temperature=0)
    assert reply.usage.completion_tokens == 16


# --- 5. Prompts

def test_the_model_sees_the_whole_prompt_whatever_max_tokens_is(client, stop_model):
    # stop_model ends its turn after 3 tokens, so even the largest limit is quick.
    counts = {}
    for max_tokens in (None, 1, 5):
        extra = {} if max_tokens is None else {'max_tokens': max_tokens}
        counts[max_tokens] = client.chat.completions.create(
            **chat(stop_model, 'What is the capital of France?', temperature=0, **extra)).usage.prompt_tokens
    assert len(set(counts.values())) == 1, counts
    context = context_length(client, stop_model)
    exact = client.chat.completions.create(**chat(stop_model, 'What is the capital of France?', temperature=0,
                                                  max_tokens=context - counts[None]))
    assert exact.usage.prompt_tokens == counts[None]


def context_length(client, model):
    """The model's context, read from the context_length_exceeded message (the API lists no such field)."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**chat(model, 'What is the capital of France?', max_tokens=10 ** 6))
    return int(re.search(r'maximum context length is (\d+) tokens', caught.value.message).group(1))
