# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fingerprints computed from the key packets agree with gpg's, armoured and binary, RSA and EdDSA."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shutil
import subprocess

import pytest

from ansible_collections.slm.fastchat.plugins.modules.repository_key import normalise, primary_fingerprints

pytestmark = pytest.mark.skipif(shutil.which('gpg') is None, reason='needs gpg to make keys')


def gpg(home, *args, **kwargs):
    return subprocess.run(['gpg', '--batch', '--homedir', str(home)] + list(args), check=True,
                          capture_output=True, **kwargs).stdout


@pytest.fixture(scope='module', params=['ed25519', 'rsa2048'])
def key(request, tmp_path_factory):
    home = tmp_path_factory.mktemp('gnupg')
    home.chmod(0o700)
    gpg(home, '--passphrase', '', '--quick-gen-key', 'test <t@invalid>', request.param, 'sign', '1d')
    gpg(home, '--passphrase', '', '--quick-add-key',
        gpg(home, '--with-colons', '--fingerprint', text=True).split('fpr:::::::::')[1].split(':')[0],
        request.param, 'sign', '1d')
    fingerprint = [line.split(':')[9] for line in gpg(home, '--with-colons', '--fingerprint', text=True).splitlines()
                   if line.startswith('fpr:')][0]
    yield gpg(home, '--armor', '--export'), gpg(home, '--export'), fingerprint
    subprocess.run(['gpgconf', '--homedir', str(home), '--kill', 'all'], check=False)


def test_armoured_and_binary_keys_give_gpgs_primary_fingerprint_only(key):
    armoured, binary, fingerprint = key
    assert primary_fingerprints(armoured) == [fingerprint]
    assert primary_fingerprints(binary) == [fingerprint]


def test_fingerprints_compare_without_spaces_or_case():
    assert normalise('02182e60 104FCDC26EAE1B8597A5 D4CB8793F200') == '02182E60104FCDC26EAE1B8597A5D4CB8793F200'


def test_something_that_is_not_a_key_is_refused():
    with pytest.raises((ValueError, IndexError, KeyError)):
        primary_fingerprints(b'<html>404 Not Found</html>')
