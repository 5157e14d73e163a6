# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start FastChat's OpenAI API server with API keys read from a file.

FastChat only takes keys as ``--api-keys a,b`` on the command line, where any
user on the host can read them in ``ps``. This entry point accepts the same
arguments but reads the keys from the file named by SLM_FASTCHAT_API_KEYS_FILE
(one key per line, ``#`` comments allowed) and refuses ``--api-keys``.

It also renders prompts with slm.fastchat's conversation templates: FastChat's
API server builds each prompt itself from the template it copies from the
worker, so it needs the same renderer (``slm_fastchat.templates``).
"""

import os
import sys

KEYS_FILE_VARIABLE = 'SLM_FASTCHAT_API_KEYS_FILE'


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


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg == '--api-keys' or arg.startswith('--api-keys=') for arg in argv):
        sys.exit('refusing --api-keys: it would show the keys in the process list; set %s' % KEYS_FILE_VARIABLE)
    keys_file = os.environ.get(KEYS_FILE_VARIABLE)
    keys = read_api_keys(keys_file) if keys_file else None

    # Imported late so the checks above run (and are testable) without FastChat.
    import uvicorn
    from fastchat.serve import openai_api_server as server
    from slm_fastchat import templates

    templates.register()
    server.Conversation = templates.FamilyConversation

    sys.argv = [sys.argv[0]] + argv
    args = server.create_openai_api_server()
    server.app_settings.api_keys = keys
    uvicorn.run(server.app, host=args.host, port=args.port, log_level='info')


if __name__ == '__main__':
    main()
