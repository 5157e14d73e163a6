# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openai_smoke_test against a local HTTPS server that answers like an OpenAI-compatible API.

The server is a test double of the endpoint (the real stack runs in the e2e scenario); TLS,
certificate verification, HTTP and SSE parsing are real.
"""

import datetime
import http.server
import json
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.slm.fastchat.plugins.modules.openai_smoke_test import SmokeTest, SmokeTestError

KEY = 'sk-unit-test-key-0123456789'


def make_certificate(directory, name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__('ipaddress').ip_address(name))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / ('%s.crt' % name), directory / ('%s.key' % name)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class Behaviour(object):
    models = ['tiny']
    chunks = ['Hel', 'lo', ' there']
    send_done = True
    content = 'Hello there'
    stall = None  # 'headers', 'body' or 'stream': stop answering there for 3 s


def make_handler(behaviour):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _authorised(self):
            if self.headers.get('Authorization') != 'Bearer ' + KEY:
                self.send_response(401)
                self.end_headers()
                self.wfile.write(b'{"detail": "invalid key"}')
                return False
            return True

        def do_GET(self):
            if not self._authorised():
                return
            body = json.dumps({'data': [{'id': name} for name in behaviour.models]}).encode()
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            if not self._authorised():
                return
            request = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
            if behaviour.stall == 'headers':
                time.sleep(3)
            if not request.get('stream'):
                body = json.dumps({'choices': [{'message': {'role': 'assistant', 'content': behaviour.content}}]}).encode()
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.flush()
                if behaviour.stall == 'body':
                    time.sleep(3)
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header('Content-Type', 'text/event-stream')
            self.end_headers()
            self.wfile.write(b'data: %s\n\n' % json.dumps({'choices': [{'delta': {'role': 'assistant'}}]}).encode())
            for piece in behaviour.chunks:
                self.wfile.write(b'data: %s\n\n' % json.dumps({'choices': [{'delta': {'content': piece}}]}).encode())
                self.wfile.flush()
                if behaviour.stall == 'stream':
                    time.sleep(3)
            if behaviour.send_done:
                self.wfile.write(b'data: [DONE]\n\n')
            self.wfile.flush()
    return Handler


@pytest.fixture
def server(tmp_path):
    behaviour = Behaviour()
    cert, key = make_certificate(tmp_path, '127.0.0.1')
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), make_handler(behaviour))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield 'https://127.0.0.1:%d/v1' % httpd.server_address[1], cert, behaviour
    httpd.shutdown()


def test_healthy_endpoint_reports_timings(server):
    url, ca, _behaviour = server
    listed, results = SmokeTest(url, KEY, ca, timeout=10).run(['tiny'], 'hi', 8, 2)
    assert listed == ['tiny']
    assert results[0]['content'] == 'Hello there'
    assert results[0]['stream_chunks'] == 3
    assert 0 <= results[0]['time_to_first_token'] <= results[0]['stream_total_time']


def test_missing_model_is_named(server):
    url, ca, _behaviour = server
    with pytest.raises(SmokeTestError, match='lists tiny but not phi-4'):
        SmokeTest(url, KEY, ca, timeout=10).run(['tiny', 'phi-4'], 'hi', 8, 2)


def test_buffered_stream_is_caught(server):
    url, ca, behaviour = server
    behaviour.chunks = ['Hello there']
    with pytest.raises(SmokeTestError, match='yielded 1 content chunks, expected at least 2'):
        SmokeTest(url, KEY, ca, timeout=10).run(['tiny'], 'hi', 8, 2)


def test_stream_without_done_is_caught(server):
    url, ca, behaviour = server
    behaviour.send_done = False
    with pytest.raises(SmokeTestError, match='without \\[DONE\\]'):
        SmokeTest(url, KEY, ca, timeout=10).run(['tiny'], 'hi', 8, 2)


def test_empty_completion_is_caught(server):
    url, ca, behaviour = server
    behaviour.content = '  '
    with pytest.raises(SmokeTestError, match='empty content'):
        SmokeTest(url, KEY, ca, timeout=10).run(['tiny'], 'hi', 8, 2)


def test_wrong_key_reports_401(server):
    url, ca, _behaviour = server
    with pytest.raises(SmokeTestError, match='HTTP 401'):
        SmokeTest(url, 'sk-wrong', ca, timeout=10).run(['tiny'], 'hi', 8, 2)


def test_certificate_from_another_ca_is_refused(server, tmp_path):
    url, _ca, _behaviour = server
    other_ca, _key = make_certificate(tmp_path, '127.0.0.2')
    with pytest.raises(SmokeTestError, match='CERTIFICATE_VERIFY_FAILED|certificate verify failed'):
        SmokeTest(url, KEY, other_ca, timeout=10).run(['tiny'], 'hi', 8, 2)


def test_unreachable_endpoint_is_named():
    with pytest.raises(SmokeTestError, match='cannot reach https://127.0.0.1:9/v1/models'):
        SmokeTest('https://127.0.0.1:9/v1', KEY, None, timeout=5).run(['tiny'], 'hi', 8, 2)


@pytest.mark.parametrize('stall, expected', [
    ('headers', 'POST https://127.0.0.1:[0-9]+/v1/chat/completions: no answer within 1 s'),
    ('body', 'tiny: the chat completion: no answer within 1 s'),
    ('stream', 'tiny: the stream, after 1 chunks: no answer within 1 s'),
])
def test_a_stalled_endpoint_is_a_message_not_a_traceback(server, stall, expected):
    """Issue 13: a socket timeout while reading was a MODULE FAILURE with a traceback."""
    url, ca, behaviour = server
    behaviour.stall = stall
    if stall == 'stream':
        # The non-streamed completion answers in time; the stream stalls after its first chunk.
        test = SmokeTest(url, KEY, ca, timeout=1)
        with pytest.raises(SmokeTestError, match=expected):
            test.stream('tiny', 'hi', 8)
        return
    with pytest.raises(SmokeTestError, match=expected):
        SmokeTest(url, KEY, ca, timeout=1).run(['tiny'], 'hi', 8, 2)
