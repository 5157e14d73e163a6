# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: file_digests
author: slm.fastchat contributors (@slm-fastchat)
version_added: 0.1.0
short_description: SHA-256 of the content of files on the control node
description:
  - For each term, a file or a directory on the control node, returns one entry per file with its name, path and the
    SHA-256 of its content.
  - A directory is walked recursively and sorted by name; only files matching O(patterns) are listed, and Python
    caches (C(__pycache__) directories, C(*.pyc)) and hidden files never are.
  - Only content counts, so a touched file, another checkout or a host that ran the tests gives the same digests.
    slm.fastchat.image hashes its build context with it.
options:
  _terms:
    description: Absolute paths of files or directories on the control node.
    type: list
    elements: path
    required: true
  patterns:
    description: Shell patterns a file name under a directory term must match.
    type: list
    elements: str
    default: ['*']
'''

EXAMPLES = r'''
- name: Digest the image extension's Python files
  ansible.builtin.debug:
    msg: "{{ lookup('slm.fastchat.file_digests', role_path ~ '/files/slm_fastchat', patterns=['*.py']) }}"
'''

RETURN = r'''
_raw:
  description: One entry per file; a file term gives its base name, a directory term names relative to it.
  type: list
  elements: dict
  contains:
    name:
      description: The name relative to the directory term (its base name for a file term), with C(/) separators.
      type: str
    path:
      description: The absolute path on the control node.
      type: str
    sha256:
      description: Hex SHA-256 of the file's bytes.
      type: str
'''

import fnmatch
import hashlib
import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

# Content is what counts; the cache only spares re-reading an unchanged large
# file (a wheel) when several hosts or tasks ask in one process.
_CACHE = {}


def sha256_file(path):
    stat = os.stat(path)
    key = (path, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        digest = hashlib.sha256()
        with open(path, 'rb') as handle:
            for block in iter(lambda: handle.read(1 << 20), b''):
                digest.update(block)
        _CACHE[key] = digest.hexdigest()
    return _CACHE[key]


def file_digests(term, patterns=('*',)):
    """The entries for one file or directory (see DOCUMENTATION)."""
    if os.path.isfile(term):
        return [{'name': os.path.basename(term), 'path': term, 'sha256': sha256_file(term)}]
    if not os.path.isdir(term):
        raise AnsibleLookupError('file_digests: %s is neither a file nor a directory on the control node' % term)
    entries = []
    for folder, dirs, names in os.walk(term):
        dirs[:] = sorted(name for name in dirs if name != '__pycache__' and not name.startswith('.'))
        for name in names:
            if name.startswith('.') or name.endswith('.pyc') or not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            relative = os.path.relpath(path, term).replace(os.sep, '/')
            entries.append({'name': relative, 'path': path, 'sha256': sha256_file(path)})
    return sorted(entries, key=lambda entry: entry['name'])


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        patterns = self.get_option('patterns')
        result = []
        for term in terms:
            result.extend(file_digests(term, patterns))
        return result
