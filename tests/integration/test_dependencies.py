# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""galaxy.yml declares every collection the shipped content uses (issue 13, item 7).

One test scans the roles, playbooks and plugins for fully qualified names of
installed collections; another runs site.yml's preflight with nothing but the
declared dependencies on the collection path, as an execution environment
built from galaxy.yml would have (ansible.utils was used and not declared).
"""

import json
import os
import re
import subprocess

import ansible_collections
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCANNED = ['roles', 'playbooks', 'plugins', 'site.yml']
SUFFIXES = ('.yml', '.yaml', '.py', '.j2')
FQCN_RE = re.compile(r'\b(?:ansible_collections\.)?([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z_][a-z0-9_]*')
CORE_IMPORT_RE = re.compile(r'^\s*(?:from|import)\s+ansible\.\S+', re.MULTILINE)
BUILTIN = {'ansible.builtin', 'ansible.legacy', 'slm.fastchat'}


def installed_collections():
    """Every namespace.name the pinned `ansible` package (and the checkout's link) provides."""
    found = set()
    for root in ansible_collections.__path__:
        for namespace in os.listdir(root):
            if os.path.isdir(os.path.join(root, namespace)):
                for name in os.listdir(os.path.join(root, namespace)):
                    if os.path.isdir(os.path.join(root, namespace, name)):
                        found.add('%s.%s' % (namespace, name))
    return found


def declared():
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        return set(yaml.safe_load(handle).get('dependencies') or {})


def used():
    collections = installed_collections()
    uses = {}
    for top in SCANNED:
        path = os.path.join(REPO, top)
        files = [path] if os.path.isfile(path) else [
            os.path.join(folder, name) for folder, dirs, names in os.walk(path)
            if '__pycache__' not in folder for name in names if name.endswith(SUFFIXES)]
        for name in files:
            with open(name, encoding='utf-8') as handle:
                # ansible-core's own Python packages (from ansible.utils.display import ...) are not collections.
                text = CORE_IMPORT_RE.sub('', handle.read())
                for match in FQCN_RE.finditer(text):
                    collection = '%s.%s' % match.groups()
                    if collection in collections and collection not in BUILTIN:
                        uses.setdefault(collection, set()).add(os.path.relpath(name, REPO))
    return uses


def test_every_collection_used_is_declared():
    uses = used()
    assert 'community.docker' in uses and 'community.crypto' in uses  # the scan works
    missing = {name: sorted(files) for name, files in uses.items() if name not in declared()}
    assert not missing, 'used but not in galaxy.yml dependencies: %s' % missing


def test_site_preflight_runs_with_only_the_declared_collections(tmp_path):
    root = tmp_path / 'ansible_collections'
    (root / 'slm').mkdir(parents=True)
    os.symlink(REPO, str(root / 'slm' / 'fastchat'))
    bundled = [path for path in ansible_collections.__path__ if os.path.isdir(os.path.join(path, 'community'))][0]
    for collection in declared():
        namespace, name = collection.split('.')
        (root / namespace).mkdir(exist_ok=True)
        os.symlink(os.path.join(bundled, namespace, name), str(root / namespace / name))
    extra = tmp_path / 'extra.json'
    extra.write_text(json.dumps({
        'fastchat_models': [{'name': 'phi-4', 'repo': 'microsoft/phi-4', 'revision': '0' * 40, 'family': 'phi-4',
                             'workers': 2, 'gpus_per_worker': 2}],
        'vault_fastchat_api_keys': ['sk-preflight-test-key-0123'], 'nvidia_driver_required': False,
        'fastchat_ca_dir': str(tmp_path / 'ca'), 'fastchat_ca_create': True,
        'ansible_connection': 'local', 'ansible_python_interpreter': 'python3', 'ansible_become': False}))
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_COLLECTIONS_PATH=str(tmp_path),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false')
    result = subprocess.run(
        ['ansible-playbook', '-i', os.path.join(REPO, 'inventories', 'prod'), os.path.join(REPO, 'site.yml'),
         '--tags', 'preflight-only', '-e', '@%s' % extra],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
