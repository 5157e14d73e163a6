#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: repository_key
short_description: Keep a package repository's signing key current and check its fingerprint
version_added: 0.2.0
description:
  - Downloads an OpenPGP public key (ASCII-armoured or binary) on every run, computes the fingerprints of its
    primary keys, fails when an expected fingerprint is missing (naming the variable it came from), and
    replaces O(dest) only when the content differs. A key rotated or corrected upstream is therefore applied
    on the next run, and a wrong or tampered key is never written.
author: slm.fastchat contributors (@slm-fastchat)
options:
  url:
    description: Where the key is published (C(https), C(http) or C(file)).
    type: str
    required: true
  dest:
    description: The key file on the host (e.g. C(/etc/apt/keyrings/<name>.asc)).
    type: path
    required: true
  fingerprints:
    description:
      - Fingerprints (40 hex digits, spaces ignored) at least one of which must be a primary key of the
        downloaded key. Empty checks nothing.
    type: list
    elements: str
    default: []
  fingerprint_variable:
    description: The variable the fingerprints came from, named in the failure message.
    type: str
    default: fingerprints
  proxy:
    description: HTTP(S) proxy for the download; empty means none.
    type: str
    default: ''
extends_documentation_fragment:
  - slm.fastchat.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
'''

EXAMPLES = r'''
- name: NVIDIA's CUDA repository key for Debian 13
  slm.fastchat.repository_key:
    url: https://developer.download.nvidia.com/compute/cuda/repos/debian13/x86_64/8793F200.pub
    dest: /etc/apt/keyrings/nvidia-cuda.asc
    fingerprints: [02182E60104FCDC26EAE1B8597A5D4CB8793F200]
'''

RETURN = r'''
fingerprints:
  description: Fingerprints of the primary keys in the downloaded key.
  returned: success
  type: list
  elements: str
  sample: [02182E60104FCDC26EAE1B8597A5D4CB8793F200]
'''

import base64
import hashlib
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.urls import open_url


def dearmor(data):
    """The binary packets of an ASCII-armoured key; binary input is returned as it is."""
    text = data.decode('ascii', 'replace') if isinstance(data, bytes) else data
    if '-----BEGIN PGP PUBLIC KEY BLOCK-----' not in text:
        return data
    body = text.split('-----BEGIN PGP PUBLIC KEY BLOCK-----', 1)[1].split('-----END PGP PUBLIC KEY BLOCK-----', 1)[0]
    lines = [line.strip() for line in body.strip().splitlines()]
    # Armour headers end at the first empty line (when there are any); the checksum line starts with '='.
    if '' in lines and any(':' in line for line in lines[:lines.index('')]):
        lines = lines[lines.index('') + 1:]
    payload = ''.join(line for line in lines if line and not line.startswith('='))
    return base64.b64decode(payload)


def packets(data):
    """(tag, body) for each OpenPGP packet (RFC 4880 section 4.2, old and new formats)."""
    position = 0
    while position < len(data):
        header = data[position]
        if not header & 0x80:
            raise ValueError('not an OpenPGP packet at byte %d' % position)
        if header & 0x40:
            tag = header & 0x3f
            first = data[position + 1]
            if first < 192:
                length, position = first, position + 2
            elif first < 224:
                length, position = ((first - 192) << 8) + data[position + 2] + 192, position + 3
            elif first == 255:
                length, position = int.from_bytes(data[position + 2:position + 6], 'big'), position + 6
            else:
                raise ValueError('partial body lengths do not occur in keys')
        else:
            tag = (header >> 2) & 0x0f
            size = {0: 1, 1: 2, 2: 4}[header & 0x03]
            length = int.from_bytes(data[position + 1:position + 1 + size], 'big')
            position += 1 + size
        yield tag, data[position:position + length]
        position += length


def primary_fingerprints(data):
    """Fingerprints of the primary public keys (tag 6): v4 SHA-1, v6 SHA-256."""
    result = []
    for tag, body in packets(dearmor(data)):
        if tag != 6 or not body:
            continue
        if body[0] == 4:
            result.append(hashlib.sha1(b'\x99' + len(body).to_bytes(2, 'big') + body).hexdigest().upper())
        elif body[0] == 6:
            result.append(hashlib.sha256(b'\x9b' + len(body).to_bytes(4, 'big') + body).hexdigest().upper())
    return result


def normalise(fingerprint):
    return re.sub(r'\s+', '', fingerprint).upper()


class RepositoryKey(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def download(self):
        proxy = self.params['proxy']
        saved = {name: os.environ.get(name) for name in ('http_proxy', 'https_proxy')}
        try:
            if proxy:
                os.environ['http_proxy'] = os.environ['https_proxy'] = proxy
            return open_url(self.params['url'], timeout=60, use_proxy=True).read()
        except Exception as exc:  # pylint: disable=broad-except
            self.module.fail_json(msg='Could not fetch the key from %s: %s' % (self.params['url'], to_native(exc)),
                                  url=self.params['url'])
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return None

    def run(self):
        url, dest = self.params['url'], self.params['dest']
        content = self.download()
        try:
            found = primary_fingerprints(content)
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            self.module.fail_json(msg='%s is not an OpenPGP public key: %s' % (url, to_native(exc)), url=url)
        if not found:
            self.module.fail_json(msg='%s holds no OpenPGP primary public key' % url, url=url)
        wanted = [normalise(f) for f in self.params['fingerprints'] if f]
        if wanted and not set(wanted) & set(found):
            self.module.fail_json(
                msg='The key at %s has fingerprint %s, not the expected %s (%s): the repository was not trusted. '
                    'Check that the URL is the right repository or mirror, or set %s to the fingerprint '
                    'the vendor publishes.' % (url, ', '.join(found), ', '.join(wanted),
                                               self.params['fingerprint_variable'],
                                               self.params['fingerprint_variable']),
                fingerprints=found, url=url)

        before = b''
        if os.path.exists(dest):
            with open(dest, 'rb') as handle:
                before = handle.read()
        changed = before != content
        result = {'changed': changed, 'fingerprints': found}
        if changed and self.module._diff:
            result['diff'] = {'before_header': dest, 'after_header': url,
                              'before': to_native(before, errors='replace'),
                              'after': to_native(content, errors='replace')}
        if changed and not self.module.check_mode:
            directory = os.path.dirname(dest)
            handle, temporary = tempfile.mkstemp(dir=directory, prefix='.repository_key')
            with os.fdopen(handle, 'wb') as out:
                out.write(content)
            os.chmod(temporary, 0o644)
            self.module.atomic_move(temporary, dest)
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            'url': {'type': 'str', 'required': True},
            'dest': {'type': 'path', 'required': True},
            'fingerprints': {'type': 'list', 'elements': 'str', 'default': []},
            'fingerprint_variable': {'type': 'str', 'default': 'fingerprints'},
            'proxy': {'type': 'str', 'default': ''},
        },
        supports_check_mode=True,
    )
    RepositoryKey(module).run()


if __name__ == '__main__':
    main()
