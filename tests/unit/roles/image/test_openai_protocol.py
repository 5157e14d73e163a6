# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenAI request checking and normalising, in process (no server)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'image', 'files'))
from slm_fastchat.openai_protocol import (  # noqa: E402  pylint: disable=wrong-import-position
    APIError, MAX_N, parse_chat, parse_completion, parse_json)

USER = [{'role': 'user', 'content': 'hi'}]


def chat(**extra):
    return dict({'model': 'm', 'messages': USER}, **extra)


def test_defaults():
    request = parse_chat(chat())
    assert request == {
        'model': 'm', 'stream': False, 'include_usage': False, 'continuous_usage': False, 'n': 1, 'max_tokens': None,
        'max_tokens_explicit': False, 'max_tokens_param': 'max_tokens', 'stop': [], 'temperature': 1.0,
        'top_p': 1.0, 'top_k': -1, 'repetition_penalty': 1.0, 'user': None, 'messages': [('user', 'hi')]}


@pytest.mark.parametrize('extra, field, value', [
    ({'max_completion_tokens': 7}, 'max_tokens', 7),
    ({'max_completion_tokens': 7}, 'max_tokens_param', 'max_completion_tokens'),
    ({'max_tokens': 7, 'max_completion_tokens': 7}, 'max_tokens', 7),
    ({'max_tokens': 5}, 'max_tokens_explicit', True),
    ({'stop': 'END'}, 'stop', ['END']),
    ({'stop': None}, 'stop', []),
    ({'stream': True, 'stream_options': {'include_usage': True}}, 'include_usage', True),
    # vLLM's extension, as guidellm sends it; without include_usage there is no usage to repeat.
    ({'stream': True, 'stream_options': {'include_usage': True, 'continuous_usage_stats': True}},
     'continuous_usage', True),
    ({'stream': True, 'stream_options': {'continuous_usage_stats': True}}, 'continuous_usage', False),
    ({'temperature': 0}, 'temperature', 0.0),
    ({'top_k': 0}, 'top_k', -1),
    ({'n': MAX_N}, 'n', MAX_N),
])
def test_parameters_are_normalised(extra, field, value):
    assert parse_chat(chat(**extra))[field] == value


@pytest.mark.parametrize('messages, rendered', [
    ([{'role': 'developer', 'content': 'be brief'}], [('developer', 'be brief')]),
    ([{'role': 'system', 'content': [{'type': 'text', 'text': 'a'}, {'type': 'text', 'text': 'b'}]}],
     [('system', 'a\nb')]),
    ([{'role': 'assistant', 'content': None}], [('assistant', '')]),
    ([{'role': 'assistant', 'content': None, 'refusal': 'no'}], [('assistant', 'no')]),
    ([{'role': 'assistant', 'content': [{'type': 'refusal', 'refusal': 'no'}]}], [('assistant', 'no')]),
    ([{'role': 'tool', 'content': '42', 'tool_call_id': 'call_1'}], [('tool', '42')]),
    ([{'role': 'user', 'content': 'hi', 'name': 'ann'}], [('user', 'hi')]),
    # What openai's ChatCompletionMessage.model_dump() gives, sent back as history.
    ([{'role': 'assistant', 'content': 'Hi.', 'refusal': None, 'annotations': None, 'audio': None,
       'function_call': None, 'tool_calls': None}], [('assistant', 'Hi.')]),
    ([{'role': 'assistant', 'content': [], 'annotations': []}], [('assistant', '')]),
])
def test_messages_become_role_and_text(messages, rendered):
    assert parse_chat(chat(messages=messages))['messages'] == rendered


@pytest.mark.parametrize('body, param, code', [
    ({'messages': USER}, 'model', 'missing_required_parameter'),
    (chat(messages=None), 'messages', 'missing_required_parameter'),
    (chat(messages=[]), 'messages', 'empty_array'),
    (chat(messages='a string'), 'messages', 'invalid_type'),
    (chat(messages=['hi']), 'messages[0]', 'invalid_type'),
    (chat(messages=[{'role': 'function', 'content': 'x', 'name': 'f'}]), 'messages[0].role', 'invalid_value'),
    (chat(messages=[{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': 'x'}}]}]),
     'messages[0].content[0].type', 'unsupported_content_type'),
    (chat(messages=[{'role': 'user', 'content': [{'text': 'x'}]}]), 'messages[0].content[0].type',
     'missing_required_parameter'),
    (chat(messages=[{'role': 'user', 'content': [{'type': 'text', 'text': 3}]}]), 'messages[0].content[0].text',
     'invalid_type'),
    (chat(messages=[{'role': 'user', 'content': [{'type': 'refusal', 'refusal': 'x'}]}]),
     'messages[0].content[0].type', 'unsupported_content_type'),
    (chat(messages=[{'role': 'assistant', 'content': 'x', 'tool_calls': [{'id': 'c'}]}]),
     'messages[0].tool_calls', 'unsupported_parameter'),
    (chat(messages=[{'role': 'user', 'content': 'x', 'tool_call_id': 'c'}]), 'messages[0].tool_call_id',
     'unknown_parameter'),
    (chat(messages=[{'role': 'user', 'content': 'x', 'color': 'red'}]), 'messages[0].color', 'unknown_parameter'),
    (chat(max_tokens=5, max_completion_tokens=6), 'max_tokens', 'invalid_value'),
    (chat(max_completion_tokens=0), 'max_completion_tokens', 'invalid_value'),
    (chat(max_tokens=1.5), 'max_tokens', 'invalid_type'),
    (chat(n=True), 'n', 'invalid_type'),
    (chat(temperature=True), 'temperature', 'invalid_type'),
    (chat(stream='yes'), 'stream', 'invalid_type'),
    (chat(stream_options={'include_usage': True}), 'stream_options', 'invalid_value'),
    (chat(stream=True, stream_options={'include_usage': True, 'x': 1}), 'stream_options.x', 'unknown_parameter'),
    (chat(stream=True, stream_options={'include_obfuscation': True}), 'stream_options.include_obfuscation',
     'unsupported_parameter'),
    (chat(stop=''), 'stop', 'invalid_value'),
    (chat(stop=[1]), 'stop[0]', 'invalid_type'),
    (chat(top_k=-2), 'top_k', 'invalid_value'),
    (chat(repetition_penalty=0), 'repetition_penalty', 'invalid_value'),
    (chat(user=5), 'user', 'invalid_type'),
    (chat(store=True), 'store', 'unsupported_parameter'),
    (chat(service_tier='flex'), 'service_tier', 'unsupported_parameter'),
    (chat(modalities=['text', 'audio']), 'modalities', 'unsupported_parameter'),
    (chat(function_call={'name': 'f'}), 'function_call', 'unsupported_parameter'),
    (chat(prediction={'type': 'content', 'content': 'x'}), 'prediction', 'unsupported_parameter'),
    (chat(best_of=2), 'best_of', 'unknown_parameter'),
    (chat(stream=True, stream_options={'include_usage': 'yes'}), 'stream_options.include_usage', 'invalid_type'),
    (chat(metadata='x'), 'metadata', 'invalid_type'),
    (chat(parallel_tool_calls='yes'), 'parallel_tool_calls', 'invalid_type'),
    (chat(messages=[{'role': 'user', 'content': []}]), 'messages[0].content', 'empty_array'),
    (chat(messages=[{'role': 'user', 'content': 'x', 'annotations': []}]), 'messages[0].annotations',
     'unknown_parameter'),
    (chat(messages=[{'role': 'assistant', 'content': 'x', 'annotations': 'x'}]), 'messages[0].annotations',
     'invalid_type'),
])
def test_bad_chat_requests_name_the_parameter(body, param, code):
    with pytest.raises(APIError) as caught:
        parse_chat(body)
    error = caught.value
    assert (error.status, error.param, error.code, error.type) == (400, param, code, 'invalid_request_error')
    assert set(error.body()['error']) == {'message', 'type', 'param', 'code'}


@pytest.mark.parametrize('body, field, value', [
    ({'model': 'm', 'prompt': 'hi'}, 'prompts', ['hi']),
    ({'model': 'm', 'prompt': ['a', 'b']}, 'prompts', ['a', 'b']),
    ({'model': 'm', 'prompt': 'hi'}, 'max_tokens', 16),
    ({'model': 'm', 'prompt': 'hi'}, 'max_tokens_explicit', False),
    ({'model': 'm', 'prompt': 'hi', 'echo': True}, 'echo', True),
    ({'model': 'm', 'prompt': 'hi', 'best_of': 1, 'suffix': None, 'logprobs': None}, 'n', 1),
])
def test_completion_requests_are_normalised(body, field, value):
    assert parse_completion(body)[field] == value


@pytest.mark.parametrize('body, param, code', [
    ({'model': 'm'}, 'prompt', 'missing_required_parameter'),
    ({'model': 'm', 'prompt': [1, 2, 3]}, 'prompt', 'unsupported_parameter'),
    ({'model': 'm', 'prompt': [[1, 2]]}, 'prompt', 'unsupported_parameter'),
    ({'model': 'm', 'prompt': []}, 'prompt', 'empty_array'),
    ({'model': 'm', 'prompt': 5}, 'prompt', 'invalid_type'),
    ({'model': 'm', 'prompt': ['a'] * 5, 'n': 4}, 'n', 'invalid_value'),
    ({'model': 'm', 'prompt': 'x', 'logprobs': 2}, 'logprobs', 'unsupported_parameter'),
    ({'model': 'm', 'prompt': 'x', 'suffix': 'y'}, 'suffix', 'unsupported_parameter'),
    ({'model': 'm', 'prompt': 'x', 'best_of': 3}, 'best_of', 'unsupported_parameter'),
    ({'model': 'm', 'prompt': 'x', 'messages': USER}, 'messages', 'unknown_parameter'),
])
def test_bad_completion_requests_name_the_parameter(body, param, code):
    with pytest.raises(APIError) as caught:
        parse_completion(body)
    assert (caught.value.param, caught.value.code) == (param, code)


@pytest.mark.parametrize('raw', [b'{', b'[]', b'"text"', b'null', b'{"model": "m", "temperature": NaN}',
                                 b'{"model": "m", "top_p": Infinity}', b'\xff\xfe', b'[' * 100000,
                                 b'{"model": "m", "\\ud800": 1}', b'{"model": "m", "user": "\\udfff"}'])
def test_bodies_that_are_not_objects_are_refused(raw):
    with pytest.raises(APIError) as caught:
        parse_json(raw)
    assert (caught.value.status, caught.value.code) == (400, 'invalid_json')
