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
  leaves (``generate_stream`` dropped its first token).
"""

import functools
import logging
import sys

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


def worker_class(base):
    """Subclass FastChat's ModelWorker so the fixes are in place before it registers."""
    class Worker(base):
        def __init__(self, *args, no_register=False, **kwargs):
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
    import uvicorn
    from fastchat.serve import model_worker as fastchat_worker

    fastchat_worker.ModelWorker = worker_class(fastchat_worker.ModelWorker)
    sys.argv = [sys.argv[0]] + argv
    args, _worker = fastchat_worker.create_model_worker()
    uvicorn.run(fastchat_worker.app, host=args.host, port=args.port, log_level='info')


if __name__ == '__main__':
    main()
