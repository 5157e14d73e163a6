# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A FastChat model worker backed by vLLM's engine: continuous batching.

FastChat's own ``vllm_worker.py`` (0.2.36 and main alike) no longer runs on
current vLLM (``AsyncLLM`` has no ``.engine``, ``SamplingParams`` lost
``use_beam_search``/``best_of``, stop token ids outside the vocabulary are
rejected). This one speaks FastChat's worker protocol exactly as
``slm_fastchat.model_worker`` (the HF worker) does, so the controller, the
API server (``slm_fastchat.openai_api``), ``/v1/models``, dispatch and the
smoke test cannot tell them apart:

- it registers with the controller and sends heartbeats with its queue
  length (requests running plus waiting), through FastChat's
  ``BaseModelWorker``;
- ``/worker_generate_stream`` yields JSON events separated by NUL bytes,
  each with the cumulative ``text`` of the reply, ``usage`` and
  ``finish_reason`` (``None`` until the last; then ``stop`` or ``length``),
  one event per generated token;
- prompts are token ids from the model's tokenizer with its defaults (the
  BOS token added), exactly what the HF worker feeds its model and what
  ``/count_token`` counts, so ``usage.prompt_tokens`` agree across backends;
- it stops on the conversation template's stop strings and stop token ids
  (ids outside the tokenizer's vocabulary dropped: vLLM rejects them);
- ``usage.completion_tokens`` counts every token generated for the reply,
  not the one that ended the turn (stop token id or EOS);
- a client that goes away (the API server closes the stream) aborts the
  sequence in the engine, which frees its slot in the running batch.

Many requests run at once: the worker admits up to
``--limit-worker-concurrency`` requests (set it to vLLM's
``--max-num-seqs``); the engine batches them.

Arguments: the worker's own (as FastChat's model worker: ``--host``,
``--port``, ``--worker-address``, ``--controller-address``,
``--model-path``, ``--model-names``, ``--conv-template``,
``--limit-worker-concurrency``, ``--stream-interval`` accepted and ignored:
this worker always streams per token), then any of vLLM's engine arguments
(``--dtype``, ``--max-model-len``, ``--max-num-seqs``,
``--gpu-memory-utilization``, ``--tensor-parallel-size``,
``--quantization``, ``--enforce-eager``...), which vLLM itself parses and
validates.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid

from slm_fastchat import templates

LOG = logging.getLogger('slm_fastchat.vllm_worker')

# FastChat's error codes (fastchat.constants.ErrorCode), which the API server maps.
CONTEXT_OVERFLOW = 40303
INTERNAL_ERROR = 50001
# Below this temperature sampling is greedy, as in FastChat's workers.
GREEDY_TEMPERATURE = 1e-5


def vocabulary_size(tokenizer):
    """The number of token ids ``tokenizer`` knows, added tokens included."""
    return len(tokenizer)


def stop_ids(tokenizer, conv, requested=()):
    """The token ids a reply stops on: the request's, the template's and its stop strings' single-token ids.

    Ids outside the vocabulary are left out (FastChat's own templates name
    other families' ids; vLLM refuses them). Order kept, no repeats.
    """
    size = vocabulary_size(tokenizer)
    ids = []
    candidates = list(requested or []) + list(conv.stop_token_ids or []) + templates.stop_token_ids(
        tokenizer, conv.stop_str)
    for token in candidates:
        if isinstance(token, int) and 0 <= token < size and token not in ids:
            ids.append(token)
    return ids


def sampling_options(params, stop_token_ids, max_tokens):
    """Keyword arguments for vLLM's SamplingParams from a FastChat ``/worker_generate_stream`` request.

    ``params`` is what the API server sends: ``temperature``, ``top_p``,
    ``top_k`` (-1: off), ``repetition_penalty`` and ``max_new_tokens``;
    stop strings are the worker's job (:class:`Reply`).
    """
    temperature = float(params.get('temperature', 1.0))
    top_p = float(params.get('top_p', 1.0))
    if temperature <= GREEDY_TEMPERATURE:
        temperature, top_p = 0.0, 1.0
    top_k = int(params.get('top_k', -1) or -1)
    return {
        'n': 1,
        'temperature': temperature,
        # vLLM wants (0, 1]; FastChat treats 0 as "only the top token".
        'top_p': max(top_p, 1e-8),
        'top_k': top_k if top_k > 0 else -1,
        'repetition_penalty': float(params.get('repetition_penalty', 1.0)),
        'max_tokens': max_tokens,
        'stop_token_ids': list(stop_token_ids),
        # The worker decodes and matches stop strings itself (Reply).
        'detokenize': False,
    }


def completion_tokens(token_ids, finish_reason, ends):
    """Tokens generated for the reply: all but the one that ended the turn (a stop token id or EOS)."""
    count = len(token_ids)
    if count and finish_reason == 'stop' and token_ids[-1] in ends:
        count -= 1
    return count


def event(text, prompt_tokens, generated, finish_reason=None, error_code=0):
    """One FastChat stream event, as JSON bytes ending in the NUL separator."""
    body = {
        'text': text,
        'error_code': error_code,
        'usage': {'prompt_tokens': prompt_tokens, 'completion_tokens': generated,
                  'total_tokens': prompt_tokens + generated},
        'finish_reason': finish_reason,
    }
    return json.dumps(body).encode() + b'\0'


class Reply(object):
    """A reply's text token by token, cut at the first stop string, as FastChat's generate_stream does it.

    vLLM's own detokenizer would use the tokenizer as transformers 5 loads
    it, which for some models (e.g. a Llama-class tokenizer.json with
    byte-level BPE) differs from what the HF worker's transformers 4 decodes;
    decoding here with the worker's tokenizer keeps both backends' text and
    stop-string handling the same.
    """

    def __init__(self, decode, stop):
        self.decode = decode
        self.stop = list(stop)
        self.text = ''
        self.count = 0
        # Whether the text ends with the start of a stop string (not sent until it is clear).
        self.held = False

    def advance(self, tokens):
        """(text, cut) after ``tokens`` (the reply so far); cut: a stop string ended the reply here."""
        self.count = len(tokens)
        text = self.decode(tokens)
        for stop in self.stop:
            found = text.find(stop)
            if found >= 0:
                self.text = text[:found]
                return self.text, True
        self.held = any(text.endswith(stop[:size]) for stop in self.stop for size in range(1, len(stop)))
        self.text = text
        return text, False


def load_tokenizer(path):
    """The model's tokenizer, tokenising and decoding as the HF worker's does.

    A ``tokenizer.json`` is loaded as it is (PreTrainedTokenizerFast): under
    transformers 5, AutoTokenizer rebuilds e.g. a ``LlamaTokenizer`` from its
    vocabulary with a different pipeline (measured on SmolLM2 converted from
    GGUF: newlines dropped, 33 prompt tokens instead of 41).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    if os.path.isfile(os.path.join(path, 'tokenizer.json')):
        return PreTrainedTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


class VLLMWorker(object):
    """FastChat's worker protocol over one vLLM AsyncLLM engine.

    ``engine`` is a ``vllm.v1.engine.async_llm.AsyncLLM`` (anything with
    ``generate(prompt, sampling_params, request_id)`` and ``abort``);
    ``tokenizer`` the model's Hugging Face tokenizer; ``conv`` the
    conversation template; ``context_len`` the engine's max model length.
    ``base`` (FastChat's BaseModelWorker, or None in tests) registers with the
    controller and sends heartbeats.
    """

    def __init__(self, engine, tokenizer, conv, context_len, limit, base=None):
        from vllm import SamplingParams  # noqa: F401  pylint: disable=unused-import
        self.engine = engine
        self.tokenizer = tokenizer
        self.conv = conv
        self.context_len = context_len
        self.limit = limit
        self.base = base
        # Requests admitted (running in the engine) and waiting for a slot.
        self.running = 0
        self.waiting = 0
        self.slots = None
        self.stop_token_ids = stop_ids(tokenizer, conv)
        self.conv.stop_token_ids = list(self.stop_token_ids)
        eos = getattr(tokenizer, 'eos_token_id', None)
        self.ends = set(self.stop_token_ids) | ({eos} if eos is not None else set())

    def queue_length(self):
        """Requests in flight and waiting: what FastChat's workers report in heartbeats."""
        return self.running + self.waiting

    def count_token(self, prompt):
        return len(self.tokenizer(prompt).input_ids)

    def prompt_ids(self, prompt):
        """The token ids the HF worker feeds its model for ``prompt`` (tokenizer defaults: BOS added)."""
        return list(self.tokenizer(prompt).input_ids)

    async def _slot(self):
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.limit)
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def _free(self):
        self.running -= 1
        self.slots.release()

    async def generate_stream(self, params):
        """Yield FastChat stream events (bytes) for one request; the last has a finish_reason.

        Closing the generator early (the client went away) aborts the
        request in the engine.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        await self._slot()
        request_id = 'slm-' + uuid.uuid4().hex
        finished = False
        try:
            ids = self.prompt_ids(params['prompt'])
            room = self.context_len - len(ids)
            wanted = int(params.get('max_new_tokens', 256))
            if room < 1:
                finished = True
                yield event('This model\'s maximum context length is %d tokens; the prompt has %d.'
                            % (self.context_len, len(ids)), len(ids), 0, 'length', CONTEXT_OVERFLOW)
                return
            requested = [token for token in params.get('stop_token_ids') or [] if isinstance(token, int)]
            stops = stop_ids(self.tokenizer, self.conv, requested)
            ends = self.ends | set(stops)
            sampling = SamplingParams(**sampling_options(params, stops, max(1, min(wanted, room))))
            stop = [text for text in (params.get('stop') or []) if text]
            stop = [stop] if isinstance(stop, str) else stop
            reply = Reply(self.decode, stop)
            async for output in self.engine.generate(TokensPrompt(prompt_token_ids=ids), sampling, request_id):
                choice = output.outputs[0]
                reason = choice.finish_reason if output.finished else None
                if reason not in (None, 'stop', 'length'):
                    # vLLM's 'abort' and others: the engine gave up on it.
                    reason = 'stop'
                # vLLM hands over several tokens at once when this stream
                # lags behind the engine: one event per token, as the HF
                # worker streams.
                tokens = list(choice.token_ids)
                for count in range(reply.count + 1, len(tokens) + 1):
                    last = count == len(tokens)
                    text, cut = reply.advance(tokens[:count])
                    if cut:
                        finished = output.finished and last
                        yield event(text, len(ids), count, 'stop')
                        return
                    if last and output.finished:
                        finished = True
                        yield event(text, len(ids), completion_tokens(tokens, reason, ends), reason)
                    elif not reply.held:
                        yield event(text, len(ids), count)
            if not finished:
                finished = True
                yield event(reply.text, len(ids), reply.count, 'stop')
        except Exception as error:  # pylint: disable=broad-except
            # Reported as FastChat reports it, so the API server answers with OpenAI's error shape.
            LOG.exception('generation failed')
            finished = True
            yield event('%s: %s' % (type(error).__name__, error), 0, 0, None, INTERNAL_ERROR)
        finally:
            # Free the slot before anything that awaits: Starlette cancels a
            # response whose client went away again at every await until
            # its task ends, which once cut this cleanup short and kept the
            # slot taken for good.
            self._free()
            if not finished:
                # The stream was closed before the end: drop the sequence from the engine now.
                LOG.info('request %s: the client went away; aborting it in the engine', request_id)
                import anyio
                with anyio.CancelScope(shield=True):
                    await self.engine.abort(request_id)

    def decode(self, tokens):
        """The reply's text as FastChat's HF worker decodes it: special tokens skipped, no spaces between them."""
        return self.tokenizer.decode(tokens, skip_special_tokens=True, spaces_between_special_tokens=False)

    async def generate(self, params):
        """The last event of generate_stream, as a dict (FastChat's ``/worker_generate``)."""
        last = None
        async for raw in self.generate_stream(params):
            last = raw
        return json.loads(last[:-1].decode())


def create_app(worker):
    """The FastAPI application serving FastChat's worker protocol for ``worker``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()

    @app.post('/worker_generate_stream')
    async def generate_stream(request: Request):
        params = await request.json()
        return StreamingResponse(worker.generate_stream(params))

    @app.post('/worker_generate')
    async def generate(request: Request):
        return JSONResponse(await worker.generate(await request.json()))

    @app.post('/worker_get_status')
    async def status(request: Request):  # pylint: disable=unused-argument
        if worker.base:
            return worker.base.get_status()
        return {'model_names': [], 'speed': 1, 'queue_length': worker.queue_length()}

    @app.post('/count_token')
    async def count_token(request: Request):
        params = await request.json()
        return {'count': worker.count_token(params['prompt']), 'error_code': 0}

    @app.post('/worker_get_conv_template')
    async def conv_template(request: Request):  # pylint: disable=unused-argument
        return {'conv': worker.conv}

    @app.post('/model_details')
    async def model_details(request: Request):  # pylint: disable=unused-argument
        return {'context_length': worker.context_len}

    # Drain routes as on the HF worker (rolling updates, docs/fleet.md).
    from slm_fastchat.model_worker import add_drain_routes
    add_drain_routes(app, lambda: worker.base)
    return app


def base_worker_class():
    """FastChat's BaseModelWorker, reporting this worker's queue and not loading FastChat's HF model code."""
    import threading

    from fastchat.conversation import get_conv_template
    from fastchat.serve.base_model_worker import BaseModelWorker

    from slm_fastchat.model_worker import Draining

    class Registration(Draining, BaseModelWorker):
        """Registers, heartbeats and drains (``POST /slm/drain`` or SIGTERM) as the HF worker does."""
        backend = None

        def __init__(self, *args, **kwargs):
            self.draining = threading.Event()
            super().__init__(*args, **kwargs)

        def make_conv_template(self, conv_template=None, model_path=None):
            return get_conv_template(conv_template)

        def get_queue_length(self):
            return self.backend.queue_length() if self.backend else 0

    return Registration


def parse_args(argv):
    """(worker options, vLLM engine arguments): the worker's own flags first, the rest go to vLLM."""
    parser = argparse.ArgumentParser(prog='slm_fastchat.vllm_worker', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--host', default='localhost')
    parser.add_argument('--port', type=int, default=21002)
    parser.add_argument('--worker-address', default='http://localhost:21002')
    parser.add_argument('--controller-address', default='http://localhost:21001')
    parser.add_argument('--model-path', required=True)
    parser.add_argument('--model-names', type=lambda text: text.split(','))
    parser.add_argument('--conv-template', required=True)
    parser.add_argument('--limit-worker-concurrency', type=int, default=256)
    parser.add_argument('--stream-interval', type=int, default=1, help='accepted for compatibility; always 1')
    parser.add_argument('--no-register', action='store_true')
    return parser.parse_known_args(argv)


def engine_arguments(model_path, rest):
    """vLLM's AsyncEngineArgs for ``model_path`` and the remaining command line, parsed by vLLM itself."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser(prog='vllm engine arguments'))
    return AsyncEngineArgs.from_cli_args(parser.parse_args(['--model', model_path] + list(rest)))


def build(args, rest):
    """(worker, app) for parsed arguments: the engine loaded, nothing registered yet."""
    from vllm.v1.engine.async_llm import AsyncLLM

    from slm_fastchat.model_worker import doubled_bos

    templates.register()
    from fastchat.conversation import conv_templates
    if args.conv_template not in conv_templates:
        sys.exit('unknown --conv-template %r; slm.fastchat adds %s to FastChat\'s own'
                 % (args.conv_template, ', '.join(templates.FAMILIES)))
    conv = conv_templates[args.conv_template].copy()
    tokenizer = load_tokenizer(args.model_path)
    if doubled_bos(tokenizer, conv):
        sys.exit('the tokenizer adds %s in front of every prompt and template %s starts with it too: set '
                 '"add_bos_token": false in the model\'s tokenizer_config.json' % (tokenizer.bos_token, conv.name))
    engine_args = engine_arguments(args.model_path, rest)
    engine = AsyncLLM.from_engine_args(engine_args)
    worker = VLLMWorker(engine, tokenizer, conv, engine.model_config.max_model_len, args.limit_worker_concurrency)
    LOG.warning('conversation template %s, stop token ids %s, context %d tokens, up to %d requests at once',
                conv.name, worker.stop_token_ids, worker.context_len, worker.limit)
    return worker, create_app(worker)


def main(argv=None):
    logging.basicConfig(level=logging.INFO)
    args, rest = parse_args(list(sys.argv[1:] if argv is None else argv))
    import uvicorn

    from slm_fastchat.model_worker import serve
    worker, app = build(args, rest)
    if not args.no_register:
        registration = base_worker_class()(
            args.controller_address, args.worker_address, uuid.uuid4().hex[:8], args.model_path,
            args.model_names, args.limit_worker_concurrency, conv_template=args.conv_template)
        registration.backend = worker
        # The template the API server fetches carries the resolved stop ids.
        registration.conv = worker.conv
        worker.base = registration
        registration.init_heart_beat()
        # SIGTERM leaves the rotation first, then the running requests finish.
        serve(app, args.host, args.port, registration)
    else:
        uvicorn.run(app, host=args.host, port=args.port, log_level='info')


if __name__ == '__main__':
    main()
