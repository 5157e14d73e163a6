# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployed endpoint through nginx and TLS: the OpenAI conformance suite
(tests/conformance), nginx's own errors in OpenAI's envelope, and TLS
checked against Mozilla's intermediate profile by sslyze."""

import os
import subprocess
import sys
import time

import httpx
import pytest

sys.path.insert(0, os.environ['MOLECULE_PROJECT_DIRECTORY'])
from tests.conformance.openai_conformance import *  # noqa: E402,F401,F403  pylint: disable=wrong-import-position,wildcard-import,unused-wildcard-import
from tests.conformance.openai_conformance import Endpoint, assert_error_envelope  # noqa: E402  pylint: disable=wrong-import-position

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
CA = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'ca', 'ca.crt')
KEY = 'sk-e2e-test-key-0123456789'
SSLYZE = os.path.join(PROJECT, '.cache', 'sslyze', 'bin', 'sslyze')


@pytest.fixture(scope='module')
def address(host):
    return host.ansible('ansible.builtin.setup', 'filter=ansible_default_ipv4')['ansible_facts'][
        'ansible_default_ipv4']['address']


# The whole suite once per backend: FastChat's HF worker, then the vLLM worker.
@pytest.fixture(scope='module', params=['tiny-llama', 'tiny-llama-vllm'])
def chat_model(request):
    return request.param


@pytest.fixture(scope='module')
def endpoint(address):
    return Endpoint('https://%s' % address, KEY, CA)


def test_a_body_over_the_limit_is_413_in_openais_envelope(http, endpoint):
    response = http.post('/v1/chat/completions', content=b'x' * (11 * 1024 * 1024),
                         headers={'Authorization': 'Bearer ' + endpoint.key, 'Content-Type': 'application/json'})
    assert_error_envelope(response, 413, code='request_too_large')


def test_tls_meets_mozillas_intermediate_profile(address):
    result = subprocess.run([SSLYZE, '--mozilla_config=intermediate', '--certinfo_ca_file=' + CA, address + ':443'],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert 'is compliant with the Mozilla "intermediate" configuration' in result.stdout or \
        'OK - Compliant' in result.stdout, result.stdout[-4000:]


def test_api_server_down_is_502_in_openais_envelope(host, http, endpoint):
    """Last of the module: stops the API server for a moment, then waits until it answers again."""
    host.check_output('docker stop fastchat-fastchat-api-server-1')
    try:
        response = http.get('/v1/models', headers={'Authorization': 'Bearer ' + endpoint.key})
        assert_error_envelope(response, 502, code='service_unavailable')
    finally:
        host.check_output('docker start fastchat-fastchat-api-server-1')
    # Later tests expect every service healthy, as a deploy leaves them.
    deadline = time.time() + 120
    while True:
        health = host.check_output("docker inspect -f '{{.State.Health.Status}}' fastchat-fastchat-api-server-1")
        try:
            answered = http.get('/v1/models', headers={'Authorization': 'Bearer ' + endpoint.key}).status_code
        except httpx.HTTPError:
            answered = None
        if health == 'healthy' and answered == 200:
            break
        assert time.time() < deadline, 'the API server did not come back (health %s)' % health
        time.sleep(2)
