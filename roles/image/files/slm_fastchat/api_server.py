# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start slm.fastchat's OpenAI API server (``slm_fastchat.openai_api``).

Arguments: ``--host``, ``--port``, ``--controller-address`` (as FastChat's
``openai_api_server`` takes them) and ``--worker-api-timeout`` (seconds,
default ``FASTCHAT_WORKER_API_TIMEOUT`` or 100). API keys come from the file
named by SLM_FASTCHAT_API_KEYS_FILE (one key per line, ``#`` comments
allowed), never from the command line, where any user on the host could read
them in ``ps``: ``--api-keys`` is refused, and so is starting without keys.

An idle client connection stays open KEEP_ALIVE_TIMEOUT seconds, longer than
nginx keeps its idle upstream connections (tls_proxy_upstream_keepalive_timeout,
60 s), so the proxy always closes one first. uvicorn's default, 5 s, let a
request that nginx sent just as the server closed the connection fail with 502.
"""

import argparse
import os
import sys

KEYS_FILE_VARIABLE = 'SLM_FASTCHAT_API_KEYS_FILE'
# Seconds; see the module docstring.
KEEP_ALIVE_TIMEOUT = 75


def read_api_keys(path):
    """Return the keys in ``path``; raise ValueError when it holds none."""
    with open(path, encoding='utf-8') as handle:
        keys = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith('#')]
    if not keys:
        raise ValueError('%s lists no API keys' % path)
    bad = [number for number, key in enumerate(keys, start=1) if any(char.isspace() or char == ',' for char in key)]
    if bad:
        raise ValueError('%s: key %s contains whitespace or a comma' % (path, ', '.join(str(n) for n in bad)))
    return keys


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m slm_fastchat.api_server', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--host', default='localhost')
    parser.add_argument('--port', type=int, default=8000)
    parser.add_argument('--controller-address', default='http://localhost:21001')
    parser.add_argument('--worker-api-timeout', type=float,
                        default=float(os.environ.get('FASTCHAT_WORKER_API_TIMEOUT', '100')))
    return parser.parse_args(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg == '--api-keys' or arg.startswith('--api-keys=') for arg in argv):
        sys.exit('refusing --api-keys: it would show the keys in the process list; set %s' % KEYS_FILE_VARIABLE)
    args = parse_args(argv)
    keys_file = os.environ.get(KEYS_FILE_VARIABLE)
    if not keys_file:
        sys.exit('%s is not set: the API server refuses to serve without API keys' % KEYS_FILE_VARIABLE)
    keys = read_api_keys(keys_file)

    # Imported late so the checks above run (and are testable) without the server's dependencies.
    import uvicorn
    from slm_fastchat import openai_api, templates

    templates.register()
    app = openai_api.create_app(args.controller_address, keys, timeout=args.worker_api_timeout)
    uvicorn.run(app, host=args.host, port=args.port, log_level='info', server_header=False,
                timeout_keep_alive=KEEP_ALIVE_TIMEOUT)


if __name__ == '__main__':
    main()
