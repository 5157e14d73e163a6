# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenAI API requests checked and normalised, and errors in OpenAI's shape.

Pure Python (no FastAPI, no pydantic), so the same rules hold whichever
pydantic the image's FastChat needs and are testable without a server.

Rules follow the OpenAI API reference for ``POST /v1/chat/completions`` and
``POST /v1/completions``. Every parameter the reference defines is either
honoured or, when it asks for something FastChat's workers cannot do
(tools, logprobs, penalties, seeds, JSON mode...), refused with a 400 whose
``param`` names it; a parameter left at its neutral value (``null``,
``false``, ``0``, ``[]``) is accepted. Unknown parameters are refused the way
OpenAI refuses them ("Unrecognized request argument supplied").

The result of :func:`parse_chat` / :func:`parse_completion` is a plain dict:

``model`` (str), ``stream`` (bool), ``include_usage`` (bool), ``continuous_usage`` (bool: usage in
every chunk, vLLM's ``stream_options.continuous_usage_stats``), ``n`` (int),
``max_tokens`` (int or None: None means "what the context leaves"),
``stop`` (list of str), ``temperature``/``top_p``/``repetition_penalty``
(float), ``top_k`` (int, -1 = off), ``user`` (str or None), and
``messages`` (chat: list of ``(role, text)`` with role in
:data:`ROLES`) or ``prompts`` (completions: list of str) and ``echo`` (bool).
"""

import json

ROLES = ('system', 'developer', 'user', 'assistant', 'tool')

# The most choices one request may ask for: each is a full generation on a worker.
MAX_N = 16
# OpenAI's limit on stop sequences.
MAX_STOP = 4
# Completions' default when max_tokens is absent (OpenAI's documented default).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


class APIError(Exception):
    """An error answered in OpenAI's envelope.

    ``status`` is the HTTP status; ``type``, ``param`` and ``code`` are the
    envelope's fields as the openai client exposes them (``e.type``,
    ``e.param``, ``e.code``). Messages never carry paths or tracebacks.
    """

    def __init__(self, status, message, type='invalid_request_error', param=None, code=None):  # noqa: A002  pylint: disable=redefined-builtin
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self):
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message, type='invalid_request_error', param=None, code=None):  # noqa: A002  pylint: disable=redefined-builtin
    return {'error': {'message': message, 'type': type, 'param': param, 'code': code}}


def invalid(param, message, code='invalid_value'):
    return APIError(400, message, param=param, code=code)


def unsupported(param, what=None):
    return APIError(400, "Unsupported parameter: '%s'%s is not supported by this server." % (
        param, (' ' + what) if what else ''), param=param, code='unsupported_parameter')


_TYPE_NAMES = {bool: 'a boolean', int: 'an integer', float: 'a number', str: 'a string', list: 'an array',
               dict: 'an object', type(None): 'null'}


def _type_name(value):
    for kind, name in _TYPE_NAMES.items():
        if type(value) is kind:  # pylint: disable=unidiomatic-typecheck
            return name
    return 'an unknown type'


def _missing(param):
    return invalid(param, "Missing required parameter: '%s'." % param, code='missing_required_parameter')


def _wrong_type(param, expected, value):
    return invalid(param, "Invalid type for '%s': expected %s, but got %s instead." % (
        param, expected, _type_name(value)), code='invalid_type')


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body, param, low, high, default):
    value = body.get(param)
    if value is None:
        return default
    if not _is_number(value):
        raise _wrong_type(param, 'a number', value)
    if value < low:
        raise invalid(param, "Invalid '%s': expected a value >= %s, but got %s instead." % (param, low, value))
    if value > high:
        raise invalid(param, "Invalid '%s': expected a value <= %s, but got %s instead." % (param, high, value))
    return float(value)


def _integer(body, param, low, high, default):
    value = body.get(param)
    if value is None:
        return default
    if not _is_int(value):
        raise _wrong_type(param, 'an integer', value)
    if value < low or (high is not None and value > high):
        raise invalid(param, "Invalid '%s': expected an integer %s, but got %s instead." % (
            param, ('from %d to %d' % (low, high)) if high is not None else ('>= %d' % low), value))
    return value


def _boolean(body, param, default=False, name=None):
    """``body[param]`` as a bool; ``name`` is how errors call it (e.g. ``stream_options.include_usage``)."""
    value = body.get(param)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _wrong_type(name or param, 'a boolean', value)
    return value


def _string(body, param):
    value = body.get(param)
    if value is not None and not isinstance(value, str):
        raise _wrong_type(param, 'a string', value)
    return value


# Parameters of the OpenAI API that FastChat's workers cannot honour, with the
# values that ask for nothing (and are therefore accepted).
def _neutral_penalty(value):
    return value is None or (_is_number(value) and value == 0)


def _range_checked_penalty(body, param):
    value = body.get(param)
    if value is not None and not _is_number(value):
        raise _wrong_type(param, 'a number', value)
    if value is not None and not -2 <= value <= 2:
        raise invalid(param, "Invalid '%s': expected a value from -2 to 2, but got %s instead." % (param, value))
    if not _neutral_penalty(value):
        raise unsupported(param, '(other than 0)')


def _refuse_unless(body, param, neutral, what=None):
    if param in body and not neutral(body[param]):
        raise unsupported(param, what)


def _empty(value):
    return value is None or value == [] or value == {}


COMMON_UNSUPPORTED = {
    'logit_bias': (_empty, None),
    'seed': (lambda value: value is None, '(workers cannot seed a single request)'),
    'service_tier': (lambda value: value in (None, 'auto', 'default'), "(other than 'auto' or 'default')"),
    'store': (lambda value: value in (None, False), '(stored completions)'),
    'metadata': (lambda value: value is None or isinstance(value, dict), None),
}

CHAT_UNSUPPORTED = dict(COMMON_UNSUPPORTED, **{
    'logprobs': (lambda value: value in (None, False), '(log probabilities)'),
    'top_logprobs': (lambda value: value in (None, 0), '(log probabilities)'),
    'tools': (_empty, '(tool calling)'),
    'tool_choice': (lambda value: value in (None, 'none', 'auto'), '(tool calling)'),
    'parallel_tool_calls': (lambda value: value is None or isinstance(value, bool), None),
    'functions': (_empty, '(function calling)'),
    'function_call': (lambda value: value in (None, 'none', 'auto'), '(function calling)'),
    'response_format': (lambda value: value is None or value == {'type': 'text'}, "(other than {'type': 'text'})"),
    'modalities': (lambda value: value is None or value == ['text'], "(other than ['text'])"),
    'audio': (lambda value: value is None, '(audio output)'),
    'prediction': (lambda value: value is None, '(predicted outputs)'),
    'reasoning_effort': (lambda value: value is None, '(this model does not reason)'),
    'verbosity': (lambda value: value is None, None),
    'web_search_options': (lambda value: value is None, '(web search)'),
})

COMPLETION_UNSUPPORTED = dict(COMMON_UNSUPPORTED, **{
    'logprobs': (lambda value: value is None, '(log probabilities)'),
    'suffix': (lambda value: value in (None, ''), '(insertion)'),
    'best_of': (lambda value: value in (None, 1), '(other than 1)'),
})

# Parameters accepted without effect on the output: identifiers for the
# operator's logs, as in OpenAI's API.
IDENTIFIERS = ('user', 'safety_identifier', 'prompt_cache_key')

# FastChat's sampling knobs beyond OpenAI's, honoured by its workers.
EXTENSIONS = ('top_k', 'repetition_penalty')

CHAT_KNOWN = {'model', 'messages', 'frequency_penalty', 'presence_penalty', 'max_tokens', 'max_completion_tokens',
              'n', 'stop', 'stream', 'stream_options', 'temperature', 'top_p'} | set(CHAT_UNSUPPORTED) \
    | set(IDENTIFIERS) | set(EXTENSIONS)
COMPLETION_KNOWN = {'model', 'prompt', 'frequency_penalty', 'presence_penalty', 'max_tokens', 'n', 'stop', 'stream',
                    'stream_options', 'temperature', 'top_p', 'echo'} | set(COMPLETION_UNSUPPORTED) \
    | set(IDENTIFIERS) | set(EXTENSIONS)


def _no_constant(name):
    # Python's json accepts NaN and Infinity, which JSON does not, and NaN
    # would pass every range check (all comparisons with it are false).
    raise ValueError('%s is not JSON' % name)


def parse_json(raw):
    """The request body as a dict; APIError 400 for anything else."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise invalid(None, 'We could not parse the JSON body of your request. The request body must be a JSON '
                            'object.', code='invalid_json') from None
    if not isinstance(body, dict):
        raise invalid(None, 'The request body must be a JSON object, but got %s instead.' % _type_name(body),
                      code='invalid_json')
    try:
        # An escaped lone surrogate ("\\ud800") parses, but is no Unicode text:
        # it could reach neither a tokenizer nor an error message.
        json.dumps(body, ensure_ascii=False).encode('utf-8')
    except UnicodeEncodeError:
        raise invalid(None, 'The request body holds an unpaired UTF-16 surrogate escape, which is not text.',
                      code='invalid_json') from None
    return body


def _common(body, known, unsupported_table, max_tokens_default):
    for name in body:
        if name not in known:
            raise invalid(name, 'Unrecognized request argument supplied: %s' % name, code='unknown_parameter')
    model = body.get('model')
    if model is None:
        raise _missing('model')
    if not isinstance(model, str):
        raise _wrong_type('model', 'a string', model)
    for name in ('frequency_penalty', 'presence_penalty'):
        _range_checked_penalty(body, name)
    if body.get('metadata') is not None and not isinstance(body['metadata'], dict):
        raise _wrong_type('metadata', 'an object', body['metadata'])
    _boolean(body, 'parallel_tool_calls')
    for name, (neutral, what) in unsupported_table.items():
        _refuse_unless(body, name, neutral, what)
    for name in IDENTIFIERS:
        _string(body, name)

    stream = _boolean(body, 'stream')
    options = body.get('stream_options')
    include_usage = continuous_usage = False
    if options is not None:
        if not stream:
            raise invalid('stream_options', "The 'stream_options' parameter is only allowed when 'stream' is "
                                            "enabled.")
        if not isinstance(options, dict):
            raise _wrong_type('stream_options', 'an object', options)
        for name in options:
            if name not in ('include_usage', 'include_obfuscation', 'continuous_usage_stats'):
                raise invalid('stream_options.%s' % name, 'Unrecognized request argument supplied: '
                              'stream_options.%s' % name, code='unknown_parameter')
        include_usage = _boolean(options, 'include_usage', name='stream_options.include_usage')
        # vLLM's extension, which load testers (guidellm) send with every
        # streamed request: usage so far in each chunk, when usage is asked for.
        continuous_usage = include_usage and _boolean(options, 'continuous_usage_stats',
                                                      name='stream_options.continuous_usage_stats')
        # Obfuscation pads chunks against length side channels; a stream here
        # has no such padding, so only "off" can be honoured.
        if _boolean(options, 'include_obfuscation', name='stream_options.include_obfuscation'):
            raise unsupported('stream_options.include_obfuscation')

    stop = body.get('stop')
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif isinstance(stop, list):
        if len(stop) > MAX_STOP:
            raise invalid('stop', "Invalid 'stop': expected at most %d sequences, but got %d." % (MAX_STOP, len(stop)))
        for index, item in enumerate(stop):
            if not isinstance(item, str):
                raise _wrong_type('stop[%d]' % index, 'a string', item)
    else:
        raise _wrong_type('stop', 'a string or an array of strings', stop)
    if any(item == '' for item in stop):
        raise invalid('stop', "Invalid 'stop': a stop sequence cannot be empty.")

    top_k = _integer(body, 'top_k', -1, None, -1)
    if top_k == 0:
        top_k = -1
    return {
        'model': model,
        'stream': stream,
        'include_usage': include_usage,
        'continuous_usage': continuous_usage,
        'n': _integer(body, 'n', 1, MAX_N, 1),
        'max_tokens': _integer(body, 'max_tokens', 1, None, max_tokens_default),
        # An explicit limit the context cannot hold is refused; a default one is cut to fit.
        'max_tokens_explicit': body.get('max_tokens') is not None,
        'stop': stop,
        'temperature': _number(body, 'temperature', 0, 2, 1.0),
        'top_p': _number(body, 'top_p', 0, 1, 1.0),
        'top_k': top_k,
        'repetition_penalty': _number(body, 'repetition_penalty', 0.01, 10, 1.0),
        'user': body.get('user'),
    }


def _content_text(content, param, role):
    """The text of a message's content: a string, or text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _wrong_type(param, 'a string or an array of content parts', content)
    if not content and role != 'assistant':
        raise invalid(param, "Invalid '%s': empty array. Expected an array with minimum length 1, but got an empty "
                             "array instead." % param, code='empty_array')
    allowed = ('text', 'refusal') if role == 'assistant' else ('text',)
    texts = []
    for index, part in enumerate(content):
        where = '%s[%d]' % (param, index)
        if not isinstance(part, dict):
            raise _wrong_type(where, 'an object', part)
        kind = part.get('type')
        if kind is None:
            raise _missing(where + '.type')
        if kind not in allowed:
            raise APIError(400, "Invalid content part '%s.type': '%s' is not supported by this server; %s "
                           "messages take %s parts only." % (where, kind, role, ' or '.join(
                               "'%s'" % name for name in allowed)),
                           param=where + '.type', code='unsupported_content_type')
        text = part.get(kind)
        if not isinstance(text, str):
            raise _wrong_type('%s.%s' % (where, kind), 'a string', text)
        texts.append(text)
    # Text parts joined by newlines, as vLLM's OpenAI server renders them.
    return '\n'.join(texts)


def _message(message, index):
    param = 'messages[%d]' % index
    if not isinstance(message, dict):
        raise _wrong_type(param, 'an object', message)
    role = message.get('role')
    if role is None:
        raise _missing(param + '.role')
    if role not in ROLES:
        raise invalid(param + '.role', "Invalid value: %s. Supported values are: %s." % (
            json.dumps(role), ', '.join("'%s'" % name for name in ROLES)))
    for name in message:
        if name not in ('role', 'content', 'name', 'tool_call_id', 'tool_calls', 'refusal', 'function_call',
                        'audio', 'annotations'):
            raise invalid('%s.%s' % (param, name), 'Unrecognized request argument supplied: %s.%s' % (param, name),
                          code='unknown_parameter')
    content = message.get('content')
    if role == 'assistant':
        for name in ('tool_calls', 'function_call', 'audio'):
            if not _empty(message.get(name)):
                raise unsupported('%s.%s' % (param, name))
        # A reply's url citations, as the client library returns them with the
        # message; a client sends the message back as it got it.
        if message.get('annotations') is not None and not isinstance(message['annotations'], list):
            raise _wrong_type(param + '.annotations', 'an array', message['annotations'])
        refusal = message.get('refusal')
        if refusal is not None and not isinstance(refusal, str):
            raise _wrong_type(param + '.refusal', 'a string', refusal)
        text = '' if content is None else _content_text(content, param + '.content', role)
        return role, text or refusal or ''
    for name in ('tool_calls', 'function_call', 'audio', 'refusal', 'annotations'):
        if name in message:
            raise invalid('%s.%s' % (param, name), 'Unrecognized request argument supplied: %s.%s' % (param, name),
                          code='unknown_parameter')
    if content is None:
        raise _missing(param + '.content')
    if role == 'tool':
        if not isinstance(message.get('tool_call_id'), str):
            raise _missing(param + '.tool_call_id')
    elif 'tool_call_id' in message:
        raise invalid(param + '.tool_call_id', 'Unrecognized request argument supplied: %s.tool_call_id' % param,
                      code='unknown_parameter')
    name = message.get('name')
    if name is not None and not isinstance(name, str):
        raise _wrong_type(param + '.name', 'a string', name)
    return role, _content_text(content, param + '.content', role)


def parse_chat(body):
    """Check a chat completions request (a dict); return the normalised request or raise APIError."""
    if 'max_tokens' in body and 'max_completion_tokens' in body and body['max_tokens'] is not None \
            and body['max_completion_tokens'] is not None and body['max_tokens'] != body['max_completion_tokens']:
        raise invalid('max_tokens', "Give only one of 'max_tokens' and 'max_completion_tokens' (they are the same "
                                    "limit; 'max_tokens' is its older name).")
    merged = dict(body)
    if merged.get('max_tokens') is None and merged.get('max_completion_tokens') is not None:
        merged['max_tokens'] = merged['max_completion_tokens']
        param = 'max_completion_tokens'
    else:
        param = 'max_tokens'
    try:
        request = _common(merged, CHAT_KNOWN, CHAT_UNSUPPORTED, None)
    except APIError as error:
        if error.param == 'max_tokens':
            error.param = param
            error.message = error.message.replace("'max_tokens'", "'%s'" % param)
        raise
    request['max_tokens_param'] = param
    messages = body.get('messages')
    if messages is None:
        raise _missing('messages')
    if not isinstance(messages, list):
        raise _wrong_type('messages', 'an array of messages', messages)
    if not messages:
        raise invalid('messages', "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
                                  "an empty array instead.", code='empty_array')
    request['messages'] = [_message(message, index) for index, message in enumerate(messages)]
    return request


def parse_completion(body):
    """Check a (legacy) completions request (a dict); return the normalised request or raise APIError."""
    request = _common(body, COMPLETION_KNOWN, COMPLETION_UNSUPPORTED, COMPLETIONS_DEFAULT_MAX_TOKENS)
    request['max_tokens_param'] = 'max_tokens'
    prompt = body.get('prompt')
    if prompt is None:
        raise _missing('prompt')
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(item, str) for item in prompt):
        prompts = prompt
    elif isinstance(prompt, list) and prompt and all(_is_int(item) or isinstance(item, list) for item in prompt):
        raise APIError(400, "Invalid 'prompt': token ids are not supported by this server; send text.",
                       param='prompt', code='unsupported_parameter')
    elif isinstance(prompt, list) and not prompt:
        raise invalid('prompt', "Invalid 'prompt': empty array. Expected an array with minimum length 1, but got an "
                                "empty array instead.", code='empty_array')
    else:
        raise _wrong_type('prompt', 'a string or an array of strings', prompt)
    if len(prompts) * request['n'] > MAX_N:
        raise invalid('n', "Invalid 'n': %d prompts with n=%d ask for %d choices; at most %d per request." % (
            len(prompts), request['n'], len(prompts) * request['n'], MAX_N))
    request['prompts'] = prompts
    request['echo'] = _boolean(body, 'echo')
    return request
