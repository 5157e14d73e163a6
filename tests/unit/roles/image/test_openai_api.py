# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The OpenAI conformance suite against the API server alone, on this machine.

Real processes on loopback: FastChat's controller, two slm_fastchat model
workers (the tiny Llama and the tiny gemma-2 fixtures, CPU) and
slm_fastchat.api_server, as the compose project runs them, without the
image, Docker or nginx. The same suite runs through nginx and TLS in the e2e
scenario (molecule/e2e/tests/test_conformance.py).
"""

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..', '..'))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'fixtures', 'models'))

from tests.conformance.openai_conformance import *  # noqa: E402,F401,F403  pylint: disable=wrong-import-position,wildcard-import,unused-wildcard-import
from tests.conformance.openai_conformance import Endpoint  # noqa: E402  pylint: disable=wrong-import-position

KEY = 'sk-unit-test-key-0123456789'


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def endpoint(tmp_path_factory):
    import make_tiny_gemma  # pylint: disable=import-outside-toplevel
    import make_tiny_model  # pylint: disable=import-outside-toplevel
    work = tmp_path_factory.mktemp('stack')
    make_tiny_model.main(str(work / 'tiny-llama'))
    make_tiny_gemma.main(str(work / 'tiny-gemma'))
    keys = work / 'api_keys'
    keys.write_text('# test\n%s\n' % KEY)
    keys.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'roles', 'image', 'files'),
               SLM_FASTCHAT_API_KEYS_FILE=str(keys), FASTCHAT_WORKER_HEART_BEAT_INTERVAL='5')
    controller, api = free_port(), free_port()
    controller_url = 'http://127.0.0.1:%d' % controller
    commands = [[sys.executable, '-m', 'fastchat.serve.controller', '--host', '127.0.0.1', '--port', str(controller)]]
    for model, template in (('tiny-llama', 'chatml'), ('tiny-gemma', 'gemma-2')):
        port = free_port()
        commands.append([sys.executable, '-m', 'slm_fastchat.model_worker', '--host', '127.0.0.1', '--port', str(port),
                         '--worker-address', 'http://127.0.0.1:%d' % port, '--controller-address', controller_url,
                         '--model-path', str(work / model), '--model-names', model, '--conv-template', template,
                         '--device', 'cpu', '--stream-interval', '1'])
    commands.append([sys.executable, '-m', 'slm_fastchat.api_server', '--host', '127.0.0.1', '--port', str(api),
                     '--controller-address', controller_url])
    processes = []
    try:
        for command in commands:
            log = open(work / ('%s.log' % len(processes)), 'wb')  # pylint: disable=consider-using-with
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(work)))
            if len(processes) == 1:
                time.sleep(2)
        base = 'http://127.0.0.1:%d' % api
        deadline = time.time() + 120
        while True:
            try:
                models = httpx.get(base + '/v1/models', headers={'Authorization': 'Bearer ' + KEY}, timeout=5).json()
                if len(models.get('data', [])) == 2:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.time() > deadline or any(process.poll() is not None for process in processes):
                logs = '\n'.join((work / ('%d.log' % index)).read_text(errors='replace')[-2000:]
                                 for index in range(len(processes)))
                pytest.fail('the local FastChat stack did not come up:\n' + logs)
            time.sleep(1)
        yield Endpoint(base, KEY, None)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture(scope='module')
def chat_model():
    return 'tiny-llama'


@pytest.fixture(scope='module')
def stop_model():
    return 'tiny-gemma'
