# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start FastChat's model worker with slm.fastchat's conversation templates.

Takes the same arguments as ``python -m fastchat.serve.model_worker``. Before
the worker registers with the controller it

- registers the templates of ``slm_fastchat.templates`` (``--conv-template``
  may name them) and refuses an unknown template by name instead of a
  KeyError traceback;
- resolves the template's stop strings to token ids of the loaded tokenizer,
  so generation stops on e.g. gemma-2's <end_of_turn>, which FastChat would
  otherwise never see (it matches stop strings against text decoded without
  special tokens);
- corrects ``usage.completion_tokens``, which fschat 0.2.36's
  ``generate_stream`` reports one too low when it stops on max_tokens or on
  a stop string;
- keeps the whole prompt when it fills exactly the room that max_tokens
  leaves (``generate_stream`` dropped its first token);
- leaves rotation before it stops (``drain``): on ``POST /slm/drain`` or
  SIGTERM it stops its heartbeats, answers the controller's status probe
  with 503 and asks the controller to re-check every worker, which drops it
  at once (FastChat's controller has no endpoint to remove a worker). The
  requests it already runs finish; ``GET /slm/drain`` reports how many are
  left. On SIGTERM uvicorn then stops listening and exits once they are done
  (Compose's ``stop_grace_period`` bounds the wait).
"""

import functools
import logging
import sys
import threading
import time

from slm_fastchat import templates

LOG = logging.getLogger('slm_fastchat.model_worker')


def with_stop_token_ids(generate, stop_ids):
    """Wrap a FastChat generate function so every request also stops on ``stop_ids``."""
    @functools.wraps(generate)
    def wrapper(model, tokenizer, params, *args, **kwargs):
        params = dict(params)
        requested = list(params.get('stop_token_ids') or [])
        params['stop_token_ids'] = requested + [token for token in stop_ids if token not in requested]
        return generate(model, tokenizer, params, *args, **kwargs)
    return wrapper


class _CountingTokenizer(object):
    """A tokenizer that remembers the last list of token ids it decoded.

    fschat's generate_stream decodes the whole reply so far on every step,
    so that list is every token it has generated; its own count (the loop
    index) is one short when a reply stops on max_tokens or on a stop string.
    """

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.generated = []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def decode(self, ids, *args, **kwargs):
        if isinstance(ids, (list, tuple)):
            self.generated = list(ids)
        return self._tokenizer.decode(ids, *args, **kwargs)


def with_exact_usage(generate):
    """Wrap fschat's generate_stream so ``usage.completion_tokens`` counts every generated token.

    The token that ended the turn (a stop token id: end of turn, EOS) is not
    part of the reply and is not counted; tokens that spelled a stop string
    were generated and are. The loop index fschat reports was one short on
    max_tokens and on stop strings (a reply cut to "Hell" by ``stop: "o"``
    reported 0 tokens).
    """
    @functools.wraps(generate)
    def wrapper(model, tokenizer, params, *args, **kwargs):
        counting = _CountingTokenizer(tokenizer)
        ends = set(params.get('stop_token_ids') or []) | {tokenizer.eos_token_id}
        for output in generate(model, counting, params, *args, **kwargs):
            usage = output.get('usage')
            if usage and counting.generated:
                tokens = len(counting.generated)
                if output.get('finish_reason') == 'stop' and counting.generated[-1] in ends:
                    tokens -= 1
                output = dict(output, usage=dict(usage, completion_tokens=tokens,
                                                 total_tokens=usage['prompt_tokens'] + tokens))
            yield output
    return wrapper


def with_whole_prompt(generate):
    """Wrap fschat's generate_stream so a prompt that exactly fills the room max_tokens leaves is kept whole.

    It keeps only the last ``context_len - max_new_tokens - 1`` prompt tokens,
    one fewer than fits, so such a prompt silently lost its first token (the
    template's opening one). The API server never asks for more than the
    context holds (``prompt + max_new_tokens <= context_len``), so one more
    position is always there.
    """
    @functools.wraps(generate)
    def wrapper(model, tokenizer, params, device, context_len, *args, **kwargs):
        return generate(model, tokenizer, params, device, context_len + 1, *args, **kwargs)
    return wrapper


def adapt(generate, tokenizer, conv, stock_generate=None):
    """Return (generate function, stop token ids) for a worker serving ``conv`` with ``tokenizer``."""
    stop_ids = list(conv.stop_token_ids or [])
    for token in templates.stop_token_ids(tokenizer, conv.stop_str):
        if token not in stop_ids:
            stop_ids.append(token)
    if stock_generate is None:
        from fastchat.serve.inference import generate_stream as stock_generate
    if generate is stock_generate:
        generate = with_exact_usage(with_whole_prompt(generate))
    return with_stop_token_ids(generate, stop_ids), stop_ids


def doubled_bos(tokenizer, conv):
    """Whether prompts would start with the BOS token twice: once from the
    template's text, once added by the tokenizer (e.g. a ChatML model whose
    tokenizer adds <|im_start|> as BOS). The model then answers badly, silently."""
    bos = getattr(tokenizer, 'bos_token_id', None)
    if bos is None:
        return False
    sample = conv.copy()
    sample.append_message(sample.roles[0], 'Hello')
    sample.append_message(sample.roles[1], None)
    ids = tokenizer(sample.get_prompt()).input_ids
    return len(ids) >= 2 and ids[0] == bos and ids[1] == bos


class Draining(object):
    """Registration that can leave the controller's rotation; mixed into a FastChat BaseModelWorker.

    The class that mixes it in sets ``self.draining = threading.Event()``
    before BaseModelWorker's ``__init__`` (nothing may send a heartbeat
    first). Shared by the HF worker and ``slm_fastchat.vllm_worker``.
    """

    def register_to_controller(self):
        """Register with the controller, again every 5 s until it answers.

        FastChat's own posts without a timeout: a controller that drops
        packets (a host down, a firewall) hung the worker for good. A
        draining worker must not come back when the controller, having
        dropped it, answers a late heartbeat with exist=False.
        """
        import requests
        while not self.draining.is_set():
            try:
                response = requests.post(self.controller_addr + '/register_worker', timeout=10, json={
                    'worker_name': self.worker_addr, 'check_heart_beat': True,
                    'worker_status': self.get_status(), 'multimodal': self.multimodal})
                if response.status_code == 200:
                    LOG.warning('registered with %s as %s', self.controller_addr, self.worker_addr)
                    return
                LOG.warning('the controller refused the registration: HTTP %d', response.status_code)
            except requests.RequestException as error:
                LOG.warning('cannot reach the controller at %s (%s); trying again', self.controller_addr, error)
            time.sleep(5)

    def send_heart_beat(self):
        if not self.draining.is_set():
            super().send_heart_beat()

    def drain(self):
        """Leave the controller's rotation; returns at once, idempotent.

        The controller's ``/refresh_all_workers`` probes every worker's
        ``/worker_get_status``, which answers 503 from now on, so the
        controller forgets this worker and dispatches nothing more to it.
        The probe needs this worker's event loop, so it runs in a thread.
        """
        if self.draining.is_set():
            return
        self.draining.set()
        LOG.warning('draining: leaving the rotation of %s', self.controller_addr)
        threading.Thread(target=self._leave_rotation, daemon=True).start()

    def _leave_rotation(self):
        import requests
        try:
            requests.post(self.controller_addr + '/refresh_all_workers', timeout=30).raise_for_status()
        except requests.RequestException as error:
            # The controller forgets a worker whose heartbeats stop anyway.
            LOG.warning('the controller did not re-check its workers (%s); it drops this one when its '
                        'heartbeat expires', error)

    def in_flight(self):
        """Requests running or queued on this worker."""
        return self.get_queue_length()


def worker_class(base):
    """Subclass FastChat's ModelWorker so the fixes are in place before it registers."""
    class Worker(Draining, base):
        def __init__(self, *args, no_register=False, **kwargs):
            # Set before anything can send a heartbeat.
            self.draining = threading.Event()
            super().__init__(*args, no_register=True, **kwargs)
            if doubled_bos(self.tokenizer, self.conv):
                sys.exit('the tokenizer adds %s in front of every prompt and template %s starts with it too: set '
                         '"add_bos_token": false in the model\'s tokenizer_config.json (as its upstream tokenizer '
                         'does) or choose the family whose template matches the model'
                         % (self.tokenizer.bos_token, self.conv.name))
            self.generate_stream_func, stop_ids = adapt(self.generate_stream_func, self.tokenizer, self.conv)
            # The API server copies the template from the worker and sends
            # these back with every request.
            self.conv.stop_token_ids = stop_ids
            LOG.warning('conversation template %s, stop token ids %s', self.conv.name, stop_ids)
            if not no_register:
                self.init_heart_beat()
    return Worker


def add_drain_routes(app, get_worker):
    """``POST /slm/drain`` starts draining; ``GET /slm/drain`` reports it; a draining worker's status probe is 503.

    ``get_worker`` returns the running worker (FastChat creates it after the
    app). Both routes answer ``{"draining": bool, "in_flight": int}``.
    """
    from fastapi.responses import JSONResponse

    def state():
        worker = get_worker()
        return {'draining': worker.draining.is_set(), 'in_flight': worker.in_flight()}

    class RefuseStatusWhileDraining(object):
        """Plain ASGI, not @app.middleware: Starlette's BaseHTTPMiddleware runs
        every route, streaming ones included, in a task of its own, for the
        sake of one path."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            worker = get_worker()
            if (scope['type'] == 'http' and scope['path'] == '/worker_get_status' and worker is not None
                    and worker.draining.is_set()):
                await JSONResponse({'error': 'draining'}, status_code=503)(scope, receive, send)
                return
            await self.app(scope, receive, send)

    app.add_middleware(RefuseStatusWhileDraining)

    @app.post('/slm/drain')
    async def start_drain():
        get_worker().drain()
        return state()

    @app.get('/slm/drain')
    async def drain_state():
        return state()


def serve(app, host, port, worker):
    """Run uvicorn; on SIGTERM or SIGINT leave the rotation first, then finish the running requests and exit."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            worker.drain()
            super().handle_exit(sig, frame)

    Server(uvicorn.Config(app, host=host, port=port, log_level='info')).run()


def requested_template(argv):
    for index, arg in enumerate(argv):
        if arg.startswith('--conv-template='):
            return arg.split('=', 1)[1]
        if arg == '--conv-template' and index + 1 < len(argv):
            return argv[index + 1]
    return None


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    templates.register()
    from fastchat.conversation import conv_templates
    if '--ssl' in argv:
        sys.exit('--ssl is not supported here: the TLS proxy terminates TLS')
    name = requested_template(argv)
    if name is None:
        sys.exit('--conv-template is required: FastChat would guess the template from the model path')
    if name not in conv_templates:
        sys.exit('unknown --conv-template %r; slm.fastchat adds %s to FastChat\'s own'
                 % (name, ', '.join(templates.FAMILIES)))

    # Imported late: the checks above run (and are testable) without FastChat's server dependencies.
    from fastchat.serve import base_model_worker
    from fastchat.serve import model_worker as fastchat_worker

    fastchat_worker.ModelWorker = worker_class(fastchat_worker.ModelWorker)
    # BaseModelWorker.__init__ sets base_model_worker.worker, which FastChat's routes use too.
    add_drain_routes(fastchat_worker.app, lambda: base_model_worker.worker)
    sys.argv = [sys.argv[0]] + argv
    args, worker = fastchat_worker.create_model_worker()
    serve(fastchat_worker.app, args.host, args.port, worker)


if __name__ == '__main__':
    main()
