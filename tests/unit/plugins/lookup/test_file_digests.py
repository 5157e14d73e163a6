# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""file_digests depends on file content and names only (issue 13, item 1)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shutil

import pytest

from ansible.errors import AnsibleLookupError
from ansible_collections.slm.fastchat.plugins.lookup.file_digests import file_digests


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / 'one' / 'slm_fastchat'
    (root / 'sub').mkdir(parents=True)
    (root / '__init__.py').write_text('')
    (root / 'api_server.py').write_text('print("api")\n')
    (root / 'sub' / 'errors.py').write_text('ERRORS = {}\n')
    return root


def digests(root):
    return [(entry['name'], entry['sha256']) for entry in file_digests(str(root), ['*.py'])]


def test_names_are_relative_and_sorted(tree):
    assert [entry[0] for entry in digests(tree)] == ['__init__.py', 'api_server.py', 'sub/errors.py']


@pytest.mark.parametrize('change', ['touch', 'pycache', 'second_checkout', 'stray_files'])
def test_only_content_counts(tree, tmp_path, change):
    before = digests(tree)
    root = tree
    if change == 'touch':
        for name in ('__init__.py', 'api_server.py'):
            os.utime(str(tree / name), (1, 1))
    elif change == 'pycache':
        (tree / '__pycache__').mkdir()
        (tree / '__pycache__' / 'api_server.cpython-311.pyc').write_bytes(b'\x00mtime')
        (tree / 'sub' / 'errors.pyc').write_bytes(b'\x00')
    elif change == 'second_checkout':
        root = tmp_path / 'two' / 'elsewhere' / 'slm_fastchat'
        shutil.copytree(str(tree), str(root))
        os.utime(str(root / 'api_server.py'), None)
    elif change == 'stray_files':
        (tree / '.api_server.py.swp').write_text('x')
        (tree / 'notes.txt').write_text('x')
    assert digests(root) == before


def test_content_changes_the_digest(tree):
    before = dict(digests(tree))
    (tree / 'api_server.py').write_text('print("api 2")\n')
    after = dict(digests(tree))
    assert after['api_server.py'] != before['api_server.py']
    assert after['__init__.py'] == before['__init__.py']


def test_a_file_term_and_a_missing_term(tree):
    entry = file_digests(str(tree / 'api_server.py'))[0]
    assert entry['name'] == 'api_server.py'
    assert entry['sha256'] == hashlib.sha256(b'print("api")\n').hexdigest()
    with pytest.raises(AnsibleLookupError, match='neither a file nor a directory'):
        file_digests(str(tree / 'missing'))
