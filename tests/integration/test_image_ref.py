# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image reference depends on the build's inputs only, and every run computes it (issue 13, items 1 and 4).

A second checkout of the same commit in another directory, with other file times and the Python caches the unit
tests leave, names the same image, so a deploy from it rebuilds nothing and restarts nothing. The reference comes
from site.yml's always-run preflight, so a run limited to --tags serve has it without a build.
"""

import json
import os
import re
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REV = '0123456789abcdef0123456789abcdef01234567'


def checkout_copy(target):
    """The tracked files (as a fresh clone has them, plus this worktree's changes), under a collection path."""
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split('\0')
    root = target / 'ansible_collections' / 'slm' / 'fastchat'
    for name in filter(None, files):
        source = os.path.join(REPO, name)
        if os.path.isfile(source):
            os.makedirs(str(root / os.path.dirname(name)), exist_ok=True)
            shutil.copyfile(source, str(root / name))  # new file times
    return root


def image_ref(checkout, tmp_path, **extra):
    extra.update(nvidia_driver_required=False,
                 vault_fastchat_api_keys=['sk-preflight-test-key-0123'],
                 fastchat_models=[{'name': 'phi-4', 'repo': 'microsoft/phi-4', 'revision': REV, 'family': 'phi-4',
                                   'workers': 2, 'gpus_per_worker': 2}],
                 fastchat_ca_dir=str(tmp_path / 'ca'), fastchat_ca_create=True,
                 ansible_connection='local', ansible_python_interpreter='python3', ansible_become=False)
    vars_file = tmp_path / 'extra.json'
    vars_file.write_text(json.dumps(extra))
    collections = os.path.dirname(os.path.dirname(os.path.dirname(str(checkout))))
    result = subprocess.run(
        ['ansible-playbook', '-v', '-i', os.path.join(str(checkout), 'inventories', 'prod'),
         os.path.join(str(checkout), 'site.yml'), '--tags', 'preflight-only', '-e', '@%s' % vars_file],
        capture_output=True, text=True, timeout=600, check=False, cwd=str(checkout),
        env=dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_COLLECTIONS_PATH=collections,
                 ANSIBLE_CONFIG=os.path.join(str(checkout), 'ansible.cfg')))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    refs = set(re.findall(r'fastchat_image_ref: (slm-fastchat:[0-9a-f]{12})', result.stdout))
    assert len(refs) == 1, result.stdout[-3000:]
    return refs.pop()


def test_two_checkouts_name_the_same_image(tmp_path):
    first = checkout_copy(tmp_path / 'one')
    second = checkout_copy(tmp_path / 'two' / 'deeper')
    # What the first checkout has lived through: unit tests' caches, touched files, editor leftovers.
    extension = first / 'roles' / 'image' / 'files' / 'slm_fastchat'
    (extension / '__pycache__').mkdir()
    (extension / '__pycache__' / 'templates.cpython-311.pyc').write_bytes(b'\x00cache')
    for name in os.listdir(str(extension)):
        os.utime(str(extension / name), (86400, 86400))
    ref = image_ref(first, tmp_path)
    assert image_ref(second, tmp_path) == ref

    # A changed input is a new image; a new module of the extension is an input.
    (second / 'roles' / 'image' / 'files' / 'slm_fastchat' / 'new_module.py').write_text('X = 1\n')
    assert image_ref(second, tmp_path) != ref
    assert image_ref(first, tmp_path, fastchat_runtime_uid=10002) != ref
