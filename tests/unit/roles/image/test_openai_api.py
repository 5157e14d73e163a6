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

import json
import os
import socket
import subprocess
import sys
import time
from http.client import HTTPConnection

import httpx
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..', '..'))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'fixtures', 'models'))
sys.path.insert(0, os.path.join(ROOT, 'roles', 'image', 'files'))

from tests.conformance.openai_conformance import *  # noqa: E402,F401,F403  pylint: disable=wrong-import-position,wildcard-import,unused-wildcard-import
from tests.conformance.openai_conformance import Endpoint  # noqa: E402  pylint: disable=wrong-import-position

KEY = 'sk-unit-test-key-0123456789'
# guidellm's virtualenv (`make capacity` makes it from requirements/guidellm.txt; CI does not: ~2 min).
GUIDELLM_VENV = os.path.join(ROOT, '.cache', 'guidellm')
# The workers' device: cpu here; SLM_TEST_DEVICE=cuda runs the same suite on a
# GPU (the device check in docs/development.md).
DEVICE = os.environ.get('SLM_TEST_DEVICE', 'cpu')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    """{'endpoint': Endpoint, 'controller': controller URL} of the running loopback stack."""
    import make_tiny_gemma  # pylint: disable=import-outside-toplevel
    import make_tiny_model  # pylint: disable=import-outside-toplevel
    work = tmp_path_factory.mktemp('stack')
    make_tiny_model.main(str(work / 'tiny-llama'))
    make_tiny_gemma.main(str(work / 'tiny-gemma'))
    keys = work / 'api_keys'
    keys.write_text('# test\n%s\n' % KEY)
    keys.chmod(0o600)
    pythonpath = os.pathsep.join(filter(None, (os.path.join(ROOT, 'roles', 'image', 'files'), os.environ.get('PYTHONPATH'))))
    env = dict(os.environ, PYTHONPATH=pythonpath,
               SLM_FASTCHAT_API_KEYS_FILE=str(keys), FASTCHAT_WORKER_HEART_BEAT_INTERVAL='5')
    controller, api = free_port(), free_port()
    controller_url = 'http://127.0.0.1:%d' % controller
    commands = [[sys.executable, '-m', 'fastchat.serve.controller', '--host', '127.0.0.1', '--port', str(controller)]]
    for model, template in (('tiny-llama', 'chatml'), ('tiny-gemma', 'gemma-2')):
        port = free_port()
        commands.append([sys.executable, '-m', 'slm_fastchat.model_worker', '--host', '127.0.0.1', '--port', str(port),
                         '--worker-address', 'http://127.0.0.1:%d' % port, '--controller-address', controller_url,
                         '--model-path', str(work / model), '--model-names', model, '--conv-template', template,
                         '--device', DEVICE, '--stream-interval', '1'])
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
        yield {'endpoint': Endpoint(base, KEY, None), 'controller': controller_url, 'processes': processes,
               'commands': commands, 'env': env, 'work': work}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture(scope='module')
def endpoint(stack):
    return stack['endpoint']


def test_a_dead_worker_costs_no_request_and_leaves_rotation(stack, client, chat_model):
    """A worker the controller still lists (e.g. just killed) is tried, found gone and dropped; every request
    is answered by the live worker."""
    dead = 'http://127.0.0.1:%d' % free_port()
    # Its last status said it was the idlest worker, so the controller picks it first.
    httpx.post(stack['controller'] + '/register_worker', timeout=5, json={
        'worker_name': dead, 'check_heart_beat': False,
        'worker_status': {'model_names': [chat_model], 'speed': 1, 'queue_length': -1}}).raise_for_status()
    picked = httpx.post(stack['controller'] + '/get_worker_address', json={'model': chat_model}, timeout=5).json()
    assert picked['address'] == dead
    for _attempt in range(5):
        reply = client.chat.completions.create(model=chat_model, messages=[{'role': 'user', 'content': 'hi'}],
                                               max_tokens=2, temperature=0)
        assert reply.usage.completion_tokens == 2
    for _attempt in range(5):
        picked = httpx.post(stack['controller'] + '/get_worker_address', json={'model': chat_model}, timeout=5)
        assert picked.json()['address'] != dead


@pytest.mark.skipif(not os.path.exists(os.path.join(GUIDELLM_VENV, 'bin', 'guidellm')),
                    reason='no guidellm virtualenv under .cache/guidellm (make capacity makes it; CI leaves it out)')
def test_a_capacity_sweep_with_guidellm_finds_the_users_held(stack, tmp_path):
    """playbooks/capacity.yml end to end: the real guidellm streams through the API server at 1 and 2 users,
    and the report says how many users meet a generous target, with its files and plots."""
    inventory = tmp_path / 'inventory.json'
    inventory.write_text(json.dumps({'all': {'hosts': {'localhost': {
        'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}}}}))
    extra = tmp_path / 'vars.json'
    extra.write_text(json.dumps({
        'capacity_host': 'localhost',
        'capacity_url': stack['endpoint'].base + '/v1', 'capacity_api_key': KEY, 'capacity_ca_path': '',
        'capacity_model': 'tiny-llama', 'capacity_tokenizer': str(stack['work'] / 'tiny-llama'),
        'capacity_users': [1, 2], 'capacity_requests_per_user': 1, 'capacity_min_requests': 2,
        'capacity_prompt_tokens': 16, 'capacity_output_tokens': 8, 'capacity_ttft_p95_max': 60,
        'capacity_e2e_p99_max': 120, 'capacity_report_dir': str(tmp_path / 'reports'),
        'capacity_label': 'loopback', 'capacity_venv': GUIDELLM_VENV}))
    extra.chmod(0o600)
    run = subprocess.run(['ansible-playbook', '-i', str(inventory), os.path.join(ROOT, 'playbooks', 'capacity.yml'),
                          '-e', '@' + str(extra)], capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    # The YAML callback folds long messages.
    assert 'holds 2 users at TTFT p95 <= 60 s, e2e p99 <= 120 s' in ' '.join(run.stdout.split())
    assert KEY not in run.stdout
    (report,) = (tmp_path / 'reports').iterdir()
    assert sorted(path.name for path in report.iterdir()) == [
        'capacity.json', 'capacity.md', 'guidellm.json', 'guidellm.log', 'latency.png', 'throughput.png']
    result = json.loads((report / 'capacity.json').read_text())['result']
    assert [(row['users'], row['errors']) for row in result['rows']] == [(1, 0), (2, 0)]
    # At least the 2 asked for are measured after the warm-up (how many more depends on timing).
    assert all(row['requests'] >= 2 for row in result['rows'])
    # Answers are capped at max_tokens, counted from the stream's usage (guidellm samples at temperature 1, so
    # even tiny-llama may draw its end-of-turn token early).
    assert all(0 < row['output_tokens_mean'] <= 8 for row in result['rows'])
    assert all(0 < row['ttft_p95'] <= row['e2e_p99'] for row in result['rows'])
    assert (report / 'latency.png').read_bytes()[:4] == b'\x89PNG'
    for path in report.iterdir():
        assert KEY not in path.read_text(errors='replace')


def test_workers_register_again_after_a_controller_restart(stack, client):
    """A restarted controller knows no worker; each registers again at its next heartbeat (5 s here)."""
    processes = stack['processes']
    processes[0].terminate()
    processes[0].wait(timeout=30)
    with open(stack['work'] / 'controller-again.log', 'wb') as log:
        processes[0] = subprocess.Popen(stack['commands'][0], env=stack['env'], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=str(stack['work']))
    started = time.time()
    while True:
        try:
            if len(client.models.list().data) == 2:
                break
        except Exception:  # pylint: disable=broad-except
            pass
        assert time.time() - started < 30, 'the workers did not register with the new controller'
        time.sleep(0.5)
    reply = client.chat.completions.create(model='tiny-gemma', messages=[{'role': 'user', 'content': 'hi'}],
                                           max_tokens=5, temperature=0)
    assert reply.choices[0].message.content == 'OK!'


def test_the_api_server_keeps_an_idle_connection_longer_than_nginx_does(stack):
    """nginx reuses an idle connection to the API server for up to tls_proxy_upstream_keepalive_timeout
    seconds and does not retry a POST that fails on one: the server must not close it first. Under uvicorn's
    default (5 s) it did, and a request sent at that moment failed with 502 (the fleet scenario's rolling
    update, once in ~700 requests). A connection idle 6 s is still served here."""
    import yaml  # pylint: disable=import-outside-toplevel
    from slm_fastchat import api_server  # pylint: disable=import-outside-toplevel
    with open(os.path.join(ROOT, 'roles', 'tls_proxy', 'defaults', 'main.yml'), encoding='utf-8') as handle:
        nginx_idle = yaml.safe_load(handle)['tls_proxy_upstream_keepalive_timeout']
    assert nginx_idle < api_server.KEEP_ALIVE_TIMEOUT
    connection = HTTPConnection(stack['endpoint'].base.split('//')[1], timeout=10)
    try:
        connection.request('GET', '/health')
        assert connection.getresponse().read() == b'{"status":"ok"}'
        sock = connection.sock
        time.sleep(6)
        connection.request('GET', '/health')
        assert connection.sock is sock
        assert connection.getresponse().read() == b'{"status":"ok"}'
    finally:
        connection.close()


def test_the_api_server_drops_idle_backend_connections_before_fastchat_does(stack):
    """The API server's own pool to the controller and workers (uvicorn, 5 s idle timeout) reuses a
    connection that was idle briefly and opens a new one after KEEPALIVE_EXPIRY, so it never sends on a
    connection the server is closing."""
    import asyncio  # pylint: disable=import-outside-toplevel
    import uvicorn  # pylint: disable=import-outside-toplevel
    from slm_fastchat import openai_api  # pylint: disable=import-outside-toplevel
    assert openai_api.KEEPALIVE_EXPIRY < uvicorn.Config(app=None).timeout_keep_alive

    async def local_ports():
        backend = openai_api.Backend(stack['controller'])
        ports = []
        try:
            for pause in (0, 0.2, openai_api.KEEPALIVE_EXPIRY + 0.5):
                await asyncio.sleep(pause)
                response = await backend.client.post(stack['controller'] + '/list_models')
                response.raise_for_status()
                ports.append(response.extensions['network_stream'].get_extra_info('client_addr')[1])
        finally:
            await backend.client.aclose()
        return ports
    first, soon, later = asyncio.run(local_ports())
    assert first == soon
    assert later != first
