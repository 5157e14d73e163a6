#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: openai_smoke_test
short_description: Prove an OpenAI-compatible endpoint serves chat completions
version_added: 0.1.0
description:
  - Calls the endpoint the way a client does, over HTTPS with certificate verification and the API key.
  - Checks that C(/models) lists every expected model and, for each model, that a non-streaming chat
    completion returns content and a streaming one yields several content chunks followed by C([DONE]).
  - Reports time to first token and total time per model, and fails with a message that says what broke.
  - Read-only; it never reports a change.
author: slm.fastchat contributors (@slm-fastchat)
options:
  url:
    description: Base URL of the API, ending in C(/v1).
    type: str
    required: true
  api_key:
    description: Key sent as a Bearer token. Omit for an endpoint without authentication.
    type: str
  ca_path:
    description: PEM file of the CA that signed the endpoint's certificate. Omit to use the system's trust store.
    type: path
  validate_certs:
    description: Verify the endpoint's certificate. Turning this off defeats the point of the test.
    type: bool
    default: true
  models:
    description: Model names the endpoint must serve; all of them are exercised.
    type: list
    elements: str
    required: true
  prompt:
    description: User message sent to every model.
    type: str
    default: Say hello in five words.
  max_tokens:
    description: Completion length; enough for several streamed chunks.
    type: int
    default: 16
  min_stream_chunks:
    description: Content chunks a streamed completion must yield.
    type: int
    default: 2
  timeout:
    description: Seconds for each request.
    type: int
    default: 300
extends_documentation_fragment:
  - slm.fastchat.attributes
attributes:
  check_mode:
    support: full
    details: The test sends requests in check mode too; it changes nothing either way.
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Smoke-test the HTTPS endpoint
  slm.fastchat.openai_smoke_test:
    url: https://llm.example.com/v1
    api_key: "{{ fastchat_api_keys[0] }}"
    ca_path: /etc/ssl/slm-fastchat-ca.crt
    models: [phi-4]
  delegate_to: localhost
'''

RETURN = r'''
models:
  description: What the endpoint's C(/models) listed.
  type: list
  elements: str
  returned: always
results:
  description: One entry per model.
  type: list
  elements: dict
  returned: success
  contains:
    model:
      description: Model name.
      type: str
    content:
      description: The non-streaming completion's text.
      type: str
    stream_chunks:
      description: Content chunks the streaming completion yielded.
      type: int
    time_to_first_token:
      description: Seconds from sending the streaming request to the first content chunk.
      type: float
    stream_total_time:
      description: Seconds until C([DONE]).
      type: float
    completion_time:
      description: Seconds for the non-streaming completion.
      type: float
'''

import json
import socket
import ssl
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.http_client import HTTPException
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.request import Request, build_opener, HTTPSHandler


class SmokeTestError(Exception):
    pass


def network_error(what, exc, timeout):
    """A SmokeTestError saying which step of the exchange with the endpoint failed, and how."""
    if isinstance(exc, socket.timeout):
        return SmokeTestError('%s: no answer within %d s (the timeout option, smoke_test_timeout)' % (what, timeout))
    if isinstance(exc, ssl.SSLError):
        return SmokeTestError('%s: TLS failure: %s' % (what, to_native(exc)))
    return SmokeTestError('%s: the connection failed: %s' % (what, to_native(exc) or type(exc).__name__))


class SmokeTest(object):
    def __init__(self, url, api_key=None, ca_path=None, validate_certs=True, timeout=300):
        self.url = url.rstrip('/')
        self.api_key = api_key
        self.timeout = timeout
        if validate_certs:
            context = ssl.create_default_context(cafile=ca_path)
        else:
            context = ssl._create_unverified_context()  # pylint: disable=protected-access
        self.opener = build_opener(HTTPSHandler(context=context))

    def _request(self, path, payload=None):
        headers = {'Accept': 'application/json'}
        if self.api_key:
            headers['Authorization'] = 'Bearer %s' % self.api_key
        data = None
        if payload is not None:
            headers['Content-Type'] = 'application/json'
            data = json.dumps(payload).encode('utf-8')
        request = Request(self.url + path, data=data, headers=headers)
        what = '%s %s' % ('POST' if data else 'GET', self.url + path)
        try:
            return self.opener.open(request, timeout=self.timeout)
        except HTTPError as exc:
            try:
                body = exc.read().decode('utf-8', 'replace')[:500]
            except (socket.error, HTTPException):
                body = ''
            raise SmokeTestError('%s answered HTTP %d: %s' % (what, exc.code, body))
        except URLError as exc:
            if isinstance(exc.reason, socket.timeout):
                raise network_error(what, exc.reason, self.timeout)
            raise SmokeTestError('cannot reach %s: %s' % (self.url + path, to_native(exc.reason)))
        except (socket.error, HTTPException) as exc:
            # A timeout or a dropped connection while waiting for the answer's headers.
            raise network_error(what, exc, self.timeout)

    def _read(self, what, response):
        try:
            return response.read()
        except (socket.error, HTTPException) as exc:
            raise network_error(what, exc, self.timeout)

    def list_models(self):
        response = self._request('/models')
        try:
            return sorted(entry['id'] for entry in json.loads(self._read('GET %s/models' % self.url, response))['data'])
        except (ValueError, KeyError, TypeError) as exc:
            raise SmokeTestError('%s/models returned no model list: %s' % (self.url, exc))

    def complete(self, model, prompt, max_tokens):
        started = time.time()
        response = self._request('/chat/completions', {
            'model': model, 'max_tokens': max_tokens, 'temperature': 0,
            'messages': [{'role': 'user', 'content': prompt}]})
        try:
            content = json.loads(self._read('%s: the chat completion' % model, response))['choices'][0]['message']['content']
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SmokeTestError('%s: the chat completion had no message content (%s)' % (model, exc))
        if not content or not content.strip():
            raise SmokeTestError('%s: the chat completion returned empty content' % model)
        return content, time.time() - started

    def stream(self, model, prompt, max_tokens):
        """Return (content chunks, seconds to the first one, seconds to [DONE])."""
        started = time.time()
        response = self._request('/chat/completions', {
            'model': model, 'max_tokens': max_tokens, 'temperature': 0, 'stream': True,
            'messages': [{'role': 'user', 'content': prompt}]})
        chunks = 0
        first = None
        lines = iter(response)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                break
            except (socket.error, HTTPException) as exc:
                raise network_error('%s: the stream, after %d chunks' % (model, chunks), exc, self.timeout)
            line = raw.decode('utf-8', 'replace').strip()
            if not line.startswith('data:'):
                continue
            data = line[5:].strip()
            if data == '[DONE]':
                return chunks, first, time.time() - started
            try:
                event = json.loads(data)
            except ValueError:
                raise SmokeTestError('%s: the stream sent an event that is not JSON: %s' % (model, data[:200]))
            if 'error_code' in event or 'error' in event:
                raise SmokeTestError('%s: the stream reported an error: %s' % (model, data[:300]))
            delta = (event.get('choices') or [{}])[0].get('delta', {})
            if delta.get('content'):
                chunks += 1
                if first is None:
                    first = time.time() - started
        raise SmokeTestError('%s: the stream ended after %d chunks without [DONE]' % (model, chunks))

    def run(self, models, prompt, max_tokens, min_chunks):
        listed = self.list_models()
        missing = sorted(set(models) - set(listed))
        if missing:
            raise SmokeTestError('%s/models lists %s but not %s' % (self.url, ', '.join(listed) or 'nothing', ', '.join(missing)))
        results = []
        for model in models:
            content, completion_time = self.complete(model, prompt, max_tokens)
            chunks, first, total = self.stream(model, prompt, max_tokens)
            if chunks < min_chunks:
                raise SmokeTestError('%s: the streamed completion yielded %d content chunks, expected at least %d '
                                     '(is the proxy buffering, or --stream-interval too large?)' % (model, chunks, min_chunks))
            results.append({'model': model, 'content': content, 'completion_time': round(completion_time, 3),
                            'stream_chunks': chunks, 'time_to_first_token': round(first, 3),
                            'stream_total_time': round(total, 3)})
        return listed, results


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', required=True),
            api_key=dict(type='str', no_log=True),
            ca_path=dict(type='path'),
            validate_certs=dict(type='bool', default=True),
            models=dict(type='list', elements='str', required=True),
            prompt=dict(type='str', default='Say hello in five words.'),
            max_tokens=dict(type='int', default=16, no_log=False),
            min_stream_chunks=dict(type='int', default=2),
            timeout=dict(type='int', default=300),
        ),
        supports_check_mode=True,
    )
    params = module.params
    test = SmokeTest(params['url'], params['api_key'], params['ca_path'], params['validate_certs'], params['timeout'])
    try:
        listed, results = test.run(params['models'], params['prompt'], params['max_tokens'], params['min_stream_chunks'])
    except SmokeTestError as exc:
        module.fail_json(msg=to_native(exc))
    except ssl.SSLError as exc:
        module.fail_json(msg='TLS failure talking to %s: %s' % (params['url'], to_native(exc)))
    module.exit_json(changed=False, models=listed, results=results)


if __name__ == '__main__':
    main()
