# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The OpenAI API in front of FastChat's controller and model workers.

Replaces FastChat's ``openai_api_server`` (docs/architecture.md says why)
and keeps FastChat's controller/worker protocol: the controller picks a
worker (``/get_worker_address``), the worker gives its conversation template
(``/worker_get_conv_template``), context length (``/model_details``) and
token count (``/count_token``) and streams text (``/worker_generate_stream``,
JSON objects separated by NUL bytes, each holding the whole text so far).

Routes: ``GET /v1/models``, ``GET /v1/models/{id}``,
``POST /v1/chat/completions``, ``POST /v1/completions`` (all need
``Authorization: Bearer <key>``) and ``GET /health`` (no key; answers
``{"status": "ok"}`` and nothing else). Every other path answers 404, every
error OpenAI's envelope (``openai_protocol.APIError``). Response objects are
the official ``openai`` package's models, so their fields are OpenAI's.
"""

import asyncio
import hmac
import json
import logging
import time
import uuid

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from openai.types import Completion, CompletionChoice, CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice as ChatChoice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice, ChoiceDelta
from starlette.exceptions import HTTPException

from slm_fastchat import templates
from slm_fastchat.openai_protocol import APIError, error_body, invalid, parse_chat, parse_completion, parse_json

LOG = logging.getLogger('slm_fastchat.openai_api')

# Worker error codes (fastchat.constants.ErrorCode) that mean "no capacity now" rather than a fault.
_UNAVAILABLE = {50002, 50005, 50006}
# Workers tried for one choice when they fail before their first token.
ATTEMPTS = 3
# Seconds an idle connection to the controller or a worker is kept for reuse: below the 5 s after which
# their uvicorn servers close it (its default timeout_keep_alive), so that this client closes it first and
# never sends a request on a connection the server is closing.
KEEPALIVE_EXPIRY = 2.0


def _now():
    return int(time.time())


class Backend:
    """FastChat's controller and workers, over HTTP.

    ``controller`` is the controller's base URL; ``timeout`` (seconds) bounds
    each call and each wait for the next streamed event from a worker, as
    FastChat's ``FASTCHAT_WORKER_API_TIMEOUT`` does.
    """

    def __init__(self, controller, timeout=100.0):
        self.controller = controller.rstrip('/')
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0),
                                        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100,
                                                            keepalive_expiry=KEEPALIVE_EXPIRY))
        # Templates by (worker address, model); a changed template recreates this server (serve role label).
        self.templates = {}

    async def _post(self, url, payload=None):
        try:
            response = await self.client.post(url, json=payload or {})
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as error:
            LOG.warning('%s failed: %r', url, error)
            raise APIError(503, 'The model backend is not reachable right now; try again shortly.',
                           type='server_error', code='service_unavailable') from None

    async def refresh(self):
        """Have the controller check every worker now and drop those that do not answer."""
        await self._post(self.controller + '/refresh_all_workers')

    async def models(self):
        """Sorted model names served by at least one live worker."""
        await self.refresh()
        return sorted((await self._post(self.controller + '/list_models')).get('models', []))

    async def worker(self, model):
        """The address of a worker for ``model``; 404 model_not_found when no worker serves it."""
        address = (await self._post(self.controller + '/get_worker_address', {'model': model})).get('address')
        if not address:
            if model in await self.models():
                raise APIError(503, 'No worker for model %s is free right now; try again shortly.' % json.dumps(model),
                               type='server_error', code='service_unavailable')
            raise APIError(404, 'The model %s does not exist or you do not have access to it.' % json.dumps(model),
                           param='model', code='model_not_found')
        return address

    async def conversation(self, address, model):
        """A fresh copy of the worker's conversation template."""
        key = (address, model)
        if key not in self.templates:
            fields = (await self._post(address + '/worker_get_conv_template', {'model': model}))['conv']
            self.templates[key] = templates.conversation_from_dict(fields)
        return self.templates[key].copy()

    async def context_length(self, address, model):
        return int((await self._post(address + '/model_details', {'model': model}))['context_length'])

    async def count_tokens(self, address, model, prompt):
        return int((await self._post(address + '/count_token', {'model': model, 'prompt': prompt}))['count'])

    async def generate(self, address, params):
        """Yield the worker's events (dicts) for one generation; APIError when it fails before the first."""
        try:
            async with self.client.stream('POST', address + '/worker_generate_stream', json=params) as response:
                response.raise_for_status()
                buffer = b''
                async for raw in response.aiter_raw():
                    buffer += raw
                    *events, buffer = buffer.split(b'\0')
                    for event in events:
                        if event:
                            yield json.loads(event)
        except (httpx.HTTPError, ValueError) as error:
            LOG.warning('generation on %s failed: %r', address, error)
            raise APIError(503, 'The model worker stopped answering; try again.', type='server_error',
                           code='service_unavailable') from None


def _worker_error(event):
    """APIError for a worker event that reports one; the worker's own text goes to the log only."""
    code = event.get('error_code', 0)
    if not code:
        return None
    LOG.error('worker error %s: %s', code, event.get('text', '')[:2000])
    if code in _UNAVAILABLE:
        return APIError(503, 'The model worker is overloaded; try again shortly.', type='server_error',
                        code='service_unavailable')
    return APIError(500, 'The model worker failed while generating.', type='server_error', code='server_error')


class Generation:
    """One choice being generated: turns the worker's cumulative text into deltas."""

    def __init__(self, index, events, prefix='', prompt_tokens=None):
        self.index = index
        self.events = events
        self.prefix = prefix
        # The worker's latest text (the reply), and how much of it went out as deltas.
        self.text = ''
        self.sent = 0
        self.finish_reason = None
        self.completion_tokens = 0
        # What the worker reports it fed the model; the counted length until then.
        self.prompt_tokens = prompt_tokens

    async def deltas(self):
        """Yield each new piece of text; sets finish_reason and completion_tokens at the end."""
        if self.prefix:
            yield self.prefix
        async for event in self.events:
            error = _worker_error(event)
            if error:
                raise error
            text = event.get('text', '')
            # A multi-byte character split across tokens decodes as U+FFFD
            # until its last byte arrives: hold it back until then, and drop
            # it when max_tokens cut the character in half.
            if text.endswith('\ufffd'):
                if event.get('finish_reason') is None:
                    continue
                if event['finish_reason'] == 'length':
                    text = text.rstrip('\ufffd')
            self.text = text
            # Counts first: a chunk with continuous usage reports them with its piece.
            usage = event.get('usage') or {}
            self.completion_tokens = usage.get('completion_tokens', self.completion_tokens)
            self.prompt_tokens = usage.get('prompt_tokens', self.prompt_tokens)
            # Decoding may tidy text already sent (spaces before punctuation);
            # like FastChat, send what lies beyond it rather than resend.
            if len(text) > self.sent:
                piece, self.sent = text[self.sent:], len(text)
                yield piece
            if event.get('finish_reason') is not None:
                self.finish_reason = event['finish_reason']


def _merge(generations):
    """Interleave several generations' deltas as (generation, piece) pairs; piece None marks an end."""
    queue = asyncio.Queue()

    async def pump(generation):
        try:
            async for piece in generation.deltas():
                await queue.put((generation, piece, None))
            await queue.put((generation, None, None))
        except APIError as error:
            await queue.put((generation, None, error))

    async def merged():
        tasks = [asyncio.ensure_future(pump(generation)) for generation in generations]
        try:
            for _generation in generations:
                while True:
                    generation, piece, error = await queue.get()
                    if error:
                        raise error
                    yield generation, piece
                    if piece is None:
                        break
        finally:
            for task in tasks:
                task.cancel()
    return merged()


class Api:
    """Request handling, independent of the web framework's routing."""

    def __init__(self, backend, api_keys):
        if not api_keys:
            raise ValueError('the API server needs at least one API key')
        self.backend = backend
        self.api_keys = [key.encode() for key in api_keys]
        self.started = _now()

    def check_key(self, request):
        header = request.headers.get('authorization', '')
        scheme, _space, key = header.partition(' ')
        if not header or scheme.lower() != 'bearer' or not key.strip():
            raise APIError(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                                'header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).')
        given = key.strip().encode()
        # Compare with every key, always, so timing says nothing about which one matched.
        matched = False
        for known in self.api_keys:
            matched |= hmac.compare_digest(given, known)
        if not matched:
            raise APIError(401, 'Incorrect API key provided.', code='invalid_api_key')

    # --- models

    def _model(self, name):
        return Model(id=name, object='model', created=self.started, owned_by='slm-fastchat')

    async def list_models(self):
        return {'object': 'list', 'data': [_dump(self._model(name)) for name in await self.backend.models()]}

    async def retrieve_model(self, name):
        if name not in await self.backend.models():
            raise APIError(404, 'The model %s does not exist or you do not have access to it.' % json.dumps(name),
                           param='model', code='model_not_found')
        return _dump(self._model(name))

    # --- generation

    async def _prepare(self, request, prompt, address):
        """Worker parameters for ``prompt``, with max_tokens checked against the model's context."""
        model = request['model']
        prompt_tokens = await self.backend.count_tokens(address, model, prompt)
        context = await self.backend.context_length(address, model)
        if prompt_tokens == 0:
            param = 'messages' if 'messages' in request else 'prompt'
            raise APIError(400, "Invalid '%s': it is empty for this model's tokenizer; give it some text." % param,
                           param=param, code='invalid_value')
        room = context - prompt_tokens
        wanted = request['max_tokens']
        if room < 1 or (wanted is not None and request['max_tokens_explicit'] and wanted > room):
            raise APIError(400, "This model's maximum context length is %d tokens. However, you requested %d tokens "
                                '(%d in the messages, %d in the completion). Please reduce the length of the '
                                'messages or completion.' % (context, prompt_tokens + (wanted or 1), prompt_tokens,
                                                             wanted or 1),
                           param=request['max_tokens_param'] if room >= 1 else (
                               'messages' if 'messages' in request else 'prompt'),
                           code='context_length_exceeded')
        max_new_tokens = room if wanted is None else min(wanted, room)
        params = {
            'model': model, 'prompt': prompt, 'temperature': request['temperature'], 'top_p': request['top_p'],
            'top_k': request['top_k'], 'repetition_penalty': request['repetition_penalty'],
            'max_new_tokens': max_new_tokens, 'echo': False, 'stop': list(request['stop']),
        }
        return params, prompt_tokens

    async def _start(self, params, index, prompt_tokens, prefix=''):
        """A Generation whose first event has arrived, so a failure before any token is an HTTP error.

        A worker that cannot be reached before it sent anything (killed,
        restarting) costs the client nothing: the request goes to another
        worker of the model (``_retrying``).
        """
        async def start_once():
            events = self.backend.generate(await self.backend.worker(params['model']), params)
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                raise APIError(500, 'The model worker ended the stream without a reply.', type='server_error',
                               code='server_error') from None
            error = _worker_error(first)
            if error:
                await events.aclose()
                raise error

            async def replay():
                yield first
                async for event in events:
                    yield event
            return Generation(index, replay(), prefix, prompt_tokens)
        return await self._retrying(start_once)

    async def _retrying(self, step):
        """``await step()``, again when the worker it reached is gone (503), up to ATTEMPTS times.

        The controller is first told to check every worker now
        (``/refresh_all_workers``), which drops the dead one at once instead
        of after its heartbeat expires, so the next pick is another worker.
        """
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await step()
            except APIError as error:
                if error.status != 503 or attempt == ATTEMPTS:
                    raise
                LOG.warning('a worker failed before its first token (%s); trying another', error.message)
                await self.backend.refresh()
        raise AssertionError('unreachable')

    async def _chat_setup(self, request):
        address = await self.backend.worker(request['model'])
        conv = await self.backend.conversation(address, request['model'])
        prompt = templates.render_messages(conv, request['messages'])
        params, prompt_tokens = await self._prepare(request, prompt, address)
        # The template's stops, then the client's.
        stop_str = conv.stop_str if isinstance(conv.stop_str, list) else ([conv.stop_str] if conv.stop_str else [])
        params['stop'] = stop_str + [stop for stop in request['stop'] if stop not in stop_str]
        params['stop_token_ids'] = list(conv.stop_token_ids or [])
        return params, prompt_tokens

    async def chat(self, body):
        request = parse_chat(body)
        params, prompt_tokens = await self._retrying(lambda: self._chat_setup(request))
        generations = await asyncio.gather(*(self._start(params, index, prompt_tokens)
                                             for index in range(request['n'])))
        ident = 'chatcmpl-' + uuid.uuid4().hex
        if request['stream']:
            return self._chat_stream(ident, request, generations)
        await asyncio.gather(*(_drain(generation) for generation in generations))
        return _dump(ChatCompletion(
            id=ident, object='chat.completion', created=_now(), model=request['model'],
            choices=[ChatChoice(index=generation.index, finish_reason=generation.finish_reason, logprobs=None,
                                message=ChatCompletionMessage(role='assistant', content=generation.text,
                                                              refusal=None))
                     for generation in generations],
            usage=_usage(generations, request['n'])))

    async def _chat_stream(self, ident, request, generations):
        created = _now()
        chunk = _chunker(request, generations, lambda choices: ChatCompletionChunk(
            id=ident, object='chat.completion.chunk', created=created, model=request['model'], choices=choices))
        for generation in generations:
            yield chunk([ChunkChoice(index=generation.index, delta=ChoiceDelta(role='assistant', content=''),
                                     finish_reason=None, logprobs=None)])

        def choice(generation, piece):
            if piece is None:
                return ChunkChoice(index=generation.index, delta=ChoiceDelta(),
                                   finish_reason=generation.finish_reason, logprobs=None)
            return ChunkChoice(index=generation.index, delta=ChoiceDelta(content=piece), finish_reason=None,
                               logprobs=None)
        async for event in _events(request, generations, chunk, choice):
            yield event

    async def completion(self, body):
        request = parse_completion(body)

        async def setup():
            address = await self.backend.worker(request['model'])
            return [await self._prepare(request, prompt, address) for prompt in request['prompts']]
        prepared = await self._retrying(setup)
        starts = []
        for number, (params, prompt_tokens) in enumerate(prepared):
            prefix = params['prompt'] if request['echo'] else ''
            starts += [self._start(params, number * request['n'] + copy, prompt_tokens, prefix)
                       for copy in range(request['n'])]
        generations = await asyncio.gather(*starts)
        ident = 'cmpl-' + uuid.uuid4().hex
        if request['stream']:
            return self._completion_stream(ident, request, generations)
        texts = dict(zip([generation.index for generation in generations],
                         await asyncio.gather(*(_drain(generation) for generation in generations))))
        return _dump(Completion(
            id=ident, object='text_completion', created=_now(), model=request['model'],
            choices=[CompletionChoice(index=generation.index, text=texts[generation.index], logprobs=None,
                                      finish_reason=generation.finish_reason) for generation in generations],
            usage=_usage(generations, request['n'])))

    async def _completion_stream(self, ident, request, generations):
        created = _now()
        chunk = _chunker(request, generations, lambda choices: Completion(
            id=ident, object='text_completion', created=created, model=request['model'], choices=choices))

        def choice(generation, piece):
            # construct(): a choice still running has no finish_reason, which the model's type does not allow.
            return CompletionChoice.construct(index=generation.index, text=piece or '', logprobs=None,
                                              finish_reason=generation.finish_reason if piece is None else None)
        async for event in _events(request, generations, chunk, choice):
            yield event


def _chunker(request, generations, make):
    """A function of (choices, usage) giving one event: ``make(choices)``'s object, with ``usage`` when the
    client asked for it: null until the last event, or the counts so far in every event with vLLM's
    ``continuous_usage_stats``."""
    def chunk(choices, usage=None):
        data = _dump(make(choices))
        if request['include_usage']:
            if usage is None and request.get('continuous_usage'):
                usage = _usage(generations, request['n'])
            data['usage'] = _dump(usage) if usage else None
        return _sse(data)
    return chunk


async def _events(request, generations, chunk, choice):
    """Server-sent events of a streamed reply: a chunk per piece of text and per choice's end (``choice``
    makes its choice object; piece None is the end), the usage chunk when asked for, then [DONE]. An error
    after the first event ends the stream as an error event, which the openai client raises."""
    try:
        async for generation, piece in _merge(generations):
            yield chunk([choice(generation, piece)])
    except APIError as error:
        yield _sse(error.body())
    else:
        if request['include_usage']:
            yield chunk([], _usage(generations, request['n']))
    yield b'data: [DONE]\n\n'


async def _drain(generation):
    return ''.join([piece async for piece in generation.deltas()])


def _usage(generations, n):
    """Usage of a request: each prompt counted once however many choices (``n``) it had."""
    prompt_tokens = sum(generation.prompt_tokens for generation in generations if generation.index % n == 0)
    completion_tokens = sum(generation.completion_tokens for generation in generations)
    return CompletionUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                           total_tokens=prompt_tokens + completion_tokens)


def _dump(model):
    """A response object as JSON-ready data: the fields that were set, nulls included (OpenAI sends them)."""
    if hasattr(model, 'model_dump'):
        return model.model_dump(mode='json', exclude_unset=True)
    return json.loads(model.json(exclude_unset=True))


def _sse(data):
    return b'data: ' + json.dumps(data, separators=(',', ':')).encode() + b'\n\n'


def _error_response(error):
    return JSONResponse(error.body(), status_code=error.status)


_HTTP_ERRORS = {
    404: ('invalid_request_error', 'unknown_url'),
    405: ('invalid_request_error', 'method_not_allowed'),
}


def create_app(controller, api_keys, timeout=100.0):
    """The ASGI app: ``controller`` is the controller's URL, ``api_keys`` a non-empty list of keys."""
    api = Api(Backend(controller, timeout), api_keys)
    app = FastAPI(title='slm.fastchat OpenAI API', docs_url=None, redoc_url=None, openapi_url=None)
    app.state.api = api

    @app.exception_handler(APIError)
    async def api_error(_request, error):
        return _error_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        kind, code = _HTTP_ERRORS.get(error.status_code, ('invalid_request_error', None))
        message = 'Invalid URL (%s %s)' % (request.method, request.url.path) if error.status_code in (404, 405) \
            else 'The request could not be handled (HTTP %d).' % error.status_code
        # Keeps Starlette's headers, e.g. Allow on a 405.
        return JSONResponse(error_body(message, kind, None, code), status_code=error.status_code,
                            headers=getattr(error, 'headers', None))

    @app.middleware('http')
    async def unexpected(request, call_next):
        # Answered here rather than by an exception handler: Starlette re-raises
        # after a handler's 500, and the server then drops the connection, which
        # nginx may be reusing for another client's request.
        try:
            return await call_next(request)
        except Exception as error:  # pylint: disable=broad-except
            LOG.exception('unexpected error: %r', error)
            return JSONResponse(error_body('The server had an error while processing your request.',
                                           'server_error', None, 'server_error'), status_code=500)

    async def body_of(request):
        raw = await request.body()
        if not raw:
            raise invalid(None, 'The request body is empty; send a JSON object.', code='invalid_json')
        return parse_json(raw)

    def respond(result):
        if hasattr(result, '__aiter__'):
            return StreamingResponse(result, media_type='text/event-stream',
                                     headers={'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no'})
        return JSONResponse(result)

    @app.api_route('/health', methods=['GET', 'HEAD'])
    async def health():
        return {'status': 'ok'}

    @app.get('/v1/models')
    async def list_models(request: Request):
        api.check_key(request)
        return JSONResponse(await api.list_models())

    @app.get('/v1/models/{model:path}')
    async def retrieve_model(model: str, request: Request):
        api.check_key(request)
        return JSONResponse(await api.retrieve_model(model))

    @app.post('/v1/chat/completions')
    async def chat_completions(request: Request):
        api.check_key(request)
        return respond(await api.chat(await body_of(request)))

    @app.post('/v1/completions')
    async def completions(request: Request):
        api.check_key(request)
        return respond(await api.completion(await body_of(request)))

    return app
