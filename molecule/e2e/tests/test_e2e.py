# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployed endpoint, as a user's client sees it: the official openai client over verified HTTPS."""

import concurrent.futures
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

sys.path.insert(0, os.environ['MOLECULE_PROJECT_DIRECTORY'])
from tests.helpers.playbook import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

EPHEMERAL = os.environ['MOLECULE_EPHEMERAL_DIRECTORY']
CA = os.path.join(EPHEMERAL, 'ca', 'ca.crt')
KEY = 'sk-e2e-test-key-0123456789'
MODEL = 'tiny-llama'
# Answers "OK!" and then emits <end_of_turn> (tests/fixtures/models/make_tiny_gemma.py).
GEMMA = 'tiny-gemma'
# The tiny Llama's tokenizer with a vLLM-sized head, on the vLLM worker.
VLLM_MODEL = 'tiny-llama-vllm'
MODELS = sorted([MODEL, GEMMA, VLLM_MODEL])
CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'converge.yml')


@pytest.fixture(scope='module')
def address(host):
    return host.ansible('ansible.builtin.setup', 'filter=ansible_default_ipv4')['ansible_facts'][
        'ansible_default_ipv4']['address']


@pytest.fixture(scope='module')
def client(address):
    return openai.OpenAI(base_url='https://%s/v1' % address, api_key=KEY, max_retries=0,
                         http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=CA)))


def test_models_lists_the_configured_model(client):
    assert sorted(model.id for model in client.models.list().data) == MODELS


def test_chat_completion_returns_content(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=[{'role': 'user', 'content': 'What is the capital of France?'}],
        max_tokens=8, temperature=0)
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens > 0


def test_completion_tokens_count_every_token_when_max_tokens_stops_the_reply(client):
    # tiny-llama never stops by itself: every reply runs to max_tokens.
    reply = client.chat.completions.create(
        model=MODEL, messages=[{'role': 'user', 'content': 'count'}], max_tokens=7, temperature=0)
    assert reply.choices[0].finish_reason == 'length'
    assert reply.usage.completion_tokens == 7


@pytest.mark.parametrize('system', [None, 'Answer briefly.'])
def test_gemma_reply_ends_at_end_of_turn(client, system):
    messages = ([{'role': 'system', 'content': system}] if system else []) + [{'role': 'user', 'content': 'hello'}]
    reply = client.chat.completions.create(model=GEMMA, messages=messages, max_tokens=20, temperature=0)
    assert reply.choices[0].message.content == 'OK!'
    assert reply.choices[0].finish_reason == 'stop'
    assert reply.usage.completion_tokens == 3


def test_gemma_stream_ends_at_end_of_turn(client):
    stream = client.chat.completions.create(
        model=GEMMA, messages=[{'role': 'user', 'content': 'hello'}], max_tokens=20, temperature=0, stream=True)
    chunks = [chunk for chunk in stream if chunk.choices]
    text = ''.join(chunk.choices[0].delta.content or '' for chunk in chunks)
    assert text == 'OK!'
    assert 'end_of_turn' not in text
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices[0].finish_reason] == ['stop']


def test_streaming_yields_several_chunks(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=[{'role': 'user', 'content': 'hello'}], max_tokens=12, temperature=0, stream=True)
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(pieces) >= 3, pieces
    assert ''.join(pieces).strip()


def test_wrong_key_is_refused(address):
    bad = openai.OpenAI(base_url='https://%s/v1' % address, api_key='sk-not-a-valid-key-000000', max_retries=0,
                        http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=CA)))
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_certificate_is_verified_against_the_private_ca(address):
    with pytest.raises(urllib.error.URLError, match='CERTIFICATE_VERIFY_FAILED'):
        urllib.request.urlopen('https://%s/v1/models' % address, timeout=10, context=ssl.create_default_context())


def test_plain_http_redirects_to_https(address):
    connection = http.client.HTTPConnection(address, 80, timeout=10)
    connection.request('GET', '/v1/models')
    response = connection.getresponse()
    assert response.status == 301
    assert response.getheader('Location') == 'https://%s/v1/models' % address


def test_hsts_and_tls_versions(address):
    request = urllib.request.Request('https://%s/v1/models' % address, headers={'Authorization': 'Bearer ' + KEY})
    with urllib.request.urlopen(request, timeout=10, context=ssl.create_default_context(cafile=CA)) as response:
        assert 'max-age=' in response.headers['Strict-Transport-Security']
    old = ssl.create_default_context(cafile=CA)
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection((address, 443), timeout=10) as sock:
            with old.wrap_socket(sock, server_hostname=address):
                pass


@pytest.mark.parametrize('port', [8000, 21001, 21002])
def test_only_the_proxy_is_reachable_from_outside(address, port):
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=5).close()


def test_api_key_is_not_in_process_list_or_compose_file(host):
    assert KEY not in host.check_output('ps -eo args')
    assert KEY not in host.file('/srv/fastchat/compose/compose.yaml').content_string
    keys = host.file('/srv/fastchat/compose/api_keys')
    assert keys.mode == 0o400 and keys.uid == 10001


def test_workers_serve_the_models_on_cpu_with_their_familys_template(host):
    services = json.loads('[' + ','.join(host.check_output(
        "docker compose -p fastchat ps --format json").splitlines()) + ']')
    workers = sorted(s['Service'] for s in services if s['Service'].startswith('fastchat-worker-'))
    assert workers == ['fastchat-worker-tiny-gemma-1', 'fastchat-worker-tiny-llama-1', 'fastchat-worker-tiny-llama-2',
                       'fastchat-worker-tiny-llama-vllm-1']
    assert all(s['Health'] == 'healthy' for s in services), services
    for worker, template in (('tiny-llama-1', 'chatml'), ('tiny-gemma-1', 'gemma-2')):
        command = json.loads(host.check_output(
            "docker inspect -f '{{json .Config.Cmd}}' fastchat-fastchat-worker-%s-1" % worker))
        assert command[:3] == ['python', '-m', 'slm_fastchat.model_worker']
        assert '--device=cpu' in command and '--conv-template=%s' % template in command
        assert '--stream-interval=1' in command
    label = host.check_output(
        "docker inspect -f '{{index .Config.Labels \"org.slm-fastchat.conv-templates\"}}' "
        "fastchat-fastchat-api-server-1")
    assert label == 'tiny-gemma=gemma-2,tiny-llama-vllm=chatml,tiny-llama=chatml'
    command = json.loads(host.check_output(
        "docker inspect -f '{{json .Config.Cmd}}' fastchat-fastchat-worker-tiny-llama-vllm-1-1"))
    assert command[:3] == ['python', '-m', 'slm_fastchat.vllm_worker']
    assert '--conv-template=chatml' in command and '--enforce-eager' in command
    assert '--limit-worker-concurrency=16' in command and '--max-num-seqs=16' in command
    image = host.check_output("docker inspect -f '{{.Config.Image}}' fastchat-fastchat-worker-tiny-llama-vllm-1-1")
    assert image.startswith('slm-fastchat-vllm:')


def worker_status(host, worker):
    """The worker's own /worker_get_status, asked from the API server's container (workers publish no port)."""
    return json.loads(host.check_output(
        "docker exec fastchat-fastchat-api-server-1 python -c \"import urllib.request as u, sys; "
        "sys.stdout.write(u.urlopen(u.Request('http://%s:21002/worker_get_status', data=b'{}')).read().decode())\""
        % worker))


def test_both_backends_count_the_same_prompt_tokens(client):
    """The HF and the vLLM worker render and tokenise a conversation alike (same tokenizer, same template)."""
    messages = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'What is the capital of France?'},
                {'role': 'assistant', 'content': 'Paris.'}, {'role': 'user', 'content': 'And of Italy?'}]
    counts = [client.chat.completions.create(model=model, messages=messages, max_tokens=3, temperature=0
                                             ).usage.prompt_tokens for model in (MODEL, VLLM_MODEL)]
    assert counts[0] > 20 and counts[0] == counts[1], counts


def eight_users_at_once(client, host):
    """Eight streams of 1500 tokens, each held after its first two chunks until all eight have them; return
    (the worker's requests in flight then, each stream's completion_tokens)."""
    started = threading.Barrier(9, timeout=120)
    release = threading.Event()

    def ask(_index):
        stream = client.chat.completions.create(model=VLLM_MODEL, messages=[{'role': 'user', 'content': 'count'}],
                                                max_tokens=1500, temperature=0, stream=True,
                                                stream_options={'include_usage': True})
        chunks = iter(stream)
        next(chunks)
        next(chunks)
        started.wait()
        release.wait(120)
        return [chunk.usage.completion_tokens for chunk in chunks if chunk.usage][-1]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(ask, index) for index in range(8)]
        started.wait()
        try:
            in_flight = worker_status(host, 'fastchat-worker-tiny-llama-vllm-1')['queue_length']
        finally:
            release.set()
        return in_flight, [future.result() for future in futures]


def test_vllm_worker_batches_concurrent_requests(client, host):
    """Eight users stream from one vLLM worker at once: all eight are in its batch together (FastChat's HF
    worker admits serve_worker_concurrency, 5, and generates one at a time), and every one is answered.

    The engine does not wait for a held stream, and the buffers between the worker and a client can hold a
    whole reply: on a busy machine the first stream can be over on the worker before the eighth has started.
    Such a try is repeated (up to 3 tries)."""
    seen = []
    for _attempt in range(3):
        in_flight, tokens = eight_users_at_once(client, host)
        assert tokens == [1500] * 8
        seen.append(in_flight)
        if in_flight == 8:
            return
    pytest.fail('never 8 requests in flight on the vLLM worker at once: %s' % seen)


def close_a_stream_mid_reply(client, host, container):
    """Open a long stream, read two chunks, close it; return (worker log since then, the slot is free) once
    the engine has aborted the sequence and the slot is free, once the reply has ended on its own, or after
    60 s."""
    since = host.check_output('date -u +%Y-%m-%dT%H:%M:%SZ')
    # As long as the context allows: the engine must still be generating when the close reaches the worker.
    stream = client.chat.completions.create(model=VLLM_MODEL, messages=[{'role': 'user', 'content': 'count'}],
                                            max_tokens=1900, temperature=0, stream=True)
    chunks = iter(stream)
    next(chunks)
    next(chunks)
    stream.close()
    deadline = time.time() + 60
    quiet = 0
    while True:
        logs = host.check_output('docker logs --since %s %s 2>&1' % (since, container))
        idle = worker_status(host, 'fastchat-worker-tiny-llama-vllm-1')['queue_length'] == 0
        # Free with no disconnect logged, twice 2 s apart: the reply ended on its own (the worker frees the
        # slot just before it logs a disconnect, hence the second look).
        quiet = quiet + 1 if idle and 'went away' not in logs else 0
        if idle and 'Aborted request' in logs or quiet == 2 or time.time() > deadline:
            return logs, idle
        time.sleep(2)


def test_a_client_that_goes_away_frees_its_vllm_slot(client, host):
    """Closing a stream mid-reply aborts the sequence in vLLM's engine (its log says so; the worker runs with
    --enable-log-requests) and frees the worker's slot.

    On a loaded machine the engine can finish the whole reply before the close has crossed nginx and the API
    server: then the worker logs no disconnect and there is nothing to abort. Such a try proves nothing either
    way, so it is repeated (up to 3 tries); a slot left taken fails at once."""
    container = 'fastchat-fastchat-worker-tiny-llama-vllm-1-1'
    for _attempt in range(3):
        logs, idle = close_a_stream_mid_reply(client, host, container)
        aborts = [line for line in logs.splitlines() if 'abort' in line.lower() or 'went away' in line]
        assert idle, 'the closed stream still holds its vLLM slot: %s' % '\n'.join(aborts)[-2000:]
        if 'went away' in logs:
            assert 'Aborted request' in logs, 'the worker saw the close but the engine did not abort: %s' % (
                '\n'.join(aborts)[-2000:])
            return
        print('the reply ended before the close reached the worker; trying again')
    pytest.fail('in 3 tries the close never reached the vLLM worker while it was generating')


def test_vllm_worker_in_process_tests_pass_inside_its_image(host):
    """tests/unit/roles/image/test_vllm_worker.py in a throwaway container of the vLLM image built here
    (the control node has no vLLM), on the deployed tiny vLLM model."""
    test = os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'tests', 'unit', 'roles', 'image',
                        'test_vllm_worker.py')
    host.ansible('ansible.builtin.copy', 'src=%s dest=/tmp/slm-vllm-tests/ mode=0644' % test, become=True,
                 check=False)
    image = host.check_output("docker inspect -f '{{.Config.Image}}' fastchat-fastchat-worker-tiny-llama-vllm-1-1")
    result = host.run(
        'docker run --rm --user 0 --shm-size 1g -e SLM_VLLM_TEST_MODEL=/model -e VLLM_CPU_KVCACHE_SPACE=1 '
        '-v /srv/fastchat/models/tiny-llama-vllm:/model:ro -v /tmp/slm-vllm-tests:/tests:ro %s '
        'sh -c "pip install --quiet pytest==%s && python -m pytest -p no:cacheprovider --noconftest -q '
        '/tests/test_vllm_worker.py"' % (image, pytest.__version__))
    assert result.rc == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert ' passed' in result.stdout and 'skipped' not in result.stdout, result.stdout[-2000:]


def container_starts(host):
    return host.check_output("docker ps -q | xargs docker inspect -f '{{.Name}} {{.State.StartedAt}}'")


def started_at(host):
    return dict(line.split(' ', 1) for line in container_starts(host).splitlines())


def wait_for_models(address, key, timeout=60):
    client = openai.OpenAI(base_url='https://%s/v1' % address, api_key=key, max_retries=0,
                           http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=CA)))
    deadline = time.time() + timeout
    while True:
        try:
            return [model.id for model in client.models.list().data]
        except (openai.APIConnectionError, openai.InternalServerError):
            if time.time() > deadline:
                raise
            time.sleep(2)


def test_new_api_keys_restart_only_the_api_server(host, address, tmp_path):
    rotated = 'sk-e2e-rotated-key-9876543210'
    before = started_at(host)
    try:
        returncode, output = run_playbook(CONVERGE, {'fastchat_api_keys': [rotated]}, tmp_path)
        assert returncode == 0, output[-3000:]
        after = started_at(host)
        assert sorted(name for name in after if after[name] != before.get(name)) == ['/fastchat-fastchat-api-server-1']
        assert sorted(wait_for_models(address, rotated)) == MODELS
        with pytest.raises(openai.AuthenticationError):
            wait_for_models(address, KEY)
    finally:
        # Back with the serve role alone: a key change is its business, and any tag computes what it needs.
        returncode, output = run_playbook(CONVERGE, {}, tmp_path, tags='serve')
        assert returncode == 0, output[-3000:]
    assert sorted(wait_for_models(address, KEY)) == MODELS
