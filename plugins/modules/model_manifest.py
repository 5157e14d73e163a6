#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: model_manifest
short_description: Read and verify the manifest of a model directory
version_added: 0.1.0
description:
  - Every model directory the C(slm.fastchat.models) role puts in place holds a manifest,
    C(.slm-fastchat-manifest.json), that records where the model came from, its revision and
    the size of every file.
  - This module reads it and checks that every listed file is present with its recorded size,
    so a rerun can skip a model that is already complete without hashing gigabytes of weights.
  - It never changes anything.
author: slm.fastchat contributors (@slm-fastchat)
options:
  path:
    description: The model directory.
    type: path
    required: true
  revision:
    description:
      - The revision the caller wants. When given, RV(up_to_date) is true only if the manifest
        records this revision and the files verify.
    type: str
extends_documentation_fragment:
  - slm.fastchat.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Is phi-4 at the pinned revision?
  slm.fastchat.model_manifest:
    path: /srv/fastchat/models/phi-4
    revision: 0123456789abcdef0123456789abcdef01234567
  register: phi4

- name: Fetch it when it is not
  ansible.builtin.debug:
    msg: phi-4 needs fetching ({{ phi4.problems | join(', ') }})
  when: not phi4.up_to_date
'''

RETURN = r'''
present:
  description: Whether the directory and its manifest exist.
  type: bool
  returned: always
revision:
  description: The revision the manifest records, or null.
  type: str
  returned: always
verified:
  description: Whether every file the manifest lists is present with its recorded size.
  type: bool
  returned: always
up_to_date:
  description: Verified, and at the requested revision when one was given.
  type: bool
  returned: always
problems:
  description: Why the model is not up to date; empty when it is.
  type: list
  elements: str
  returned: always
manifest:
  description: The manifest without its file list.
  type: dict
  returned: always
'''

import json
import os

from ansible.module_utils.basic import AnsibleModule

MANIFEST_NAME = '.slm-fastchat-manifest.json'


class ModelManifest(object):
    def __init__(self, path):
        self.path = path

    def check(self, revision=None):
        result = {'present': False, 'revision': None, 'verified': False, 'up_to_date': False,
                  'problems': [], 'manifest': {}}
        manifest_path = os.path.join(self.path, MANIFEST_NAME)
        if not os.path.isfile(manifest_path):
            result['problems'].append('no manifest at %s' % manifest_path)
            return result
        try:
            with open(manifest_path) as handle:
                manifest = json.load(handle)
            files = manifest['files']
            if not isinstance(files, dict) or not files:
                raise ValueError('no files listed')
        except (ValueError, KeyError, TypeError) as exc:
            result['problems'].append('unreadable manifest %s: %s' % (manifest_path, exc))
            return result
        result['present'] = True
        result['revision'] = manifest.get('revision')
        result['manifest'] = dict((key, value) for key, value in manifest.items() if key != 'files')
        for name, size in sorted(files.items()):
            full = os.path.join(self.path, name)
            if os.path.normpath(full) != full or not full.startswith(self.path.rstrip('/') + '/'):
                result['problems'].append('manifest lists a path outside the directory: %s' % name)
            elif not os.path.isfile(full):
                result['problems'].append('missing file %s' % name)
            elif os.path.getsize(full) != size:
                result['problems'].append('%s is %d bytes, the manifest says %d' % (name, os.path.getsize(full), size))
        result['verified'] = not result['problems']
        if revision and result['revision'] != revision:
            result['problems'].append('revision %s, wanted %s' % (result['revision'], revision))
        result['up_to_date'] = not result['problems']
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            revision=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    path = os.path.abspath(module.params['path'])
    result = ModelManifest(path).check(module.params['revision'])
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
