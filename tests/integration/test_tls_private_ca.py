# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The private CA is never made behind the operator's back, and host certificates renew (issue 13, items 2, 3).

Runs the tls_proxy role's preflight and certificate steps on this machine (tls/private_ca.yml), with the CA and
the host's files in a temporary directory.
"""

import datetime
import hashlib
import json
import os
import re
import subprocess

import pytest
from cryptography import x509

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the role writes the host files as root')


def run(tmp_path, **extra):
    extra.update(__tls_proxy_dir=str(tmp_path / 'host'), tls_proxy_ca_dir=str(tmp_path / 'ca'),
                 tls_proxy_server_names=['llm.example.test'], ansible_python_interpreter='python3',
                 ansible_become=False)
    (tmp_path / 'host').mkdir(exist_ok=True)
    vars_file = tmp_path / 'extra.json'
    vars_file.write_text(json.dumps(extra))
    result = subprocess.run(
        ['ansible-playbook', '-i', 'localhost,', os.path.join(HERE, 'tls', 'private_ca.yml'), '-e', '@%s' % vars_file],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO, env=dict(os.environ, ANSIBLE_NOCOLOR='1'))
    return result.returncode, ' '.join((result.stdout + result.stderr).split())


def days_left(tmp_path):
    with open(str(tmp_path / 'host' / 'cert.pem'), 'rb') as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).days


def ca_digest(tmp_path):
    return [hashlib.sha256((tmp_path / 'ca' / name).read_bytes()).hexdigest() for name in ('ca.crt', 'ca.key')]


def test_no_ca_and_not_asked_fails_naming_where_it_must_be(tmp_path):
    returncode, output = run(tmp_path)
    assert returncode != 0
    assert 'No private CA on this control node: %s/ca.crt' % (tmp_path / 'ca') in output, output[-2000:]
    assert 'tls_proxy_ca_create' in output
    assert not (tmp_path / 'ca').exists()
    assert 'changed=0' in output


def test_half_a_ca_fails(tmp_path):
    (tmp_path / 'ca').mkdir()
    (tmp_path / 'ca' / 'ca.crt').write_text('x')
    returncode, output = run(tmp_path, tls_proxy_ca_create=True)
    assert returncode != 0
    assert 'is incomplete' in output and 'ca.key' in output, output[-2000:]


def test_create_once_then_keep_and_renew(tmp_path):
    # First deploy: asked to make the CA; a certificate valid for 10 days.
    returncode, output = run(tmp_path, tls_proxy_ca_create=True, tls_proxy_certificate_days=10,
                             tls_proxy_certificate_renew_days=5)
    assert returncode == 0, output[-3000:]
    ca = ca_digest(tmp_path)
    assert days_left(tmp_path) in (9, 10)
    # The status entry point (playbooks/gpu_check.yml) reports it.
    assert re.search(r'certificate for llm.example.test expires [0-9-]+ [0-9:]+ UTC, (9|10) days left', output), \
        output[-2000:]

    # Rerun: 10 days left, renewal at 5: nothing changes.
    returncode, output = run(tmp_path, tls_proxy_certificate_days=10, tls_proxy_certificate_renew_days=5)
    assert returncode == 0 and 'changed=0' in output, output[-3000:]

    # Renewal window of 30 days: the 10-day certificate is signed anew for 365 days, by the same CA.
    returncode, output = run(tmp_path, tls_proxy_certificate_renew_days=30)
    assert returncode == 0 and 'changed=0' not in output, output[-3000:]
    assert days_left(tmp_path) in (364, 365)
    returncode, output = run(tmp_path, tls_proxy_certificate_renew_days=30)
    assert returncode == 0 and 'changed=0' in output, output[-3000:]

    # Asked to create again, or with another common name: the CA stays.
    returncode, output = run(tmp_path, tls_proxy_ca_create=True, tls_proxy_ca_common_name='another CA')
    assert returncode == 0 and 'changed=0' in output, output[-3000:]
    assert ca_digest(tmp_path) == ca


def test_renewal_window_must_be_shorter_than_validity(tmp_path):
    returncode, output = run(tmp_path, tls_proxy_ca_create=True, tls_proxy_certificate_days=30,
                             tls_proxy_certificate_renew_days=30)
    assert returncode != 0
    assert 'tls_proxy_certificate_renew_days (30) must be at least 1 and less than tls_proxy_certificate_days (30)' \
        in output, output[-2000:]
