# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Hub fetcher's placement and manifest, and the contract with the model_manifest module.

The download itself needs the Hugging Face Hub, which these machines cannot reach; what is
tested here is everything around it that decides whether a model on disk is complete.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'image', 'files'))
from slm_fastchat import fetch_model  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.slm.fastchat.plugins.modules.model_manifest import ModelManifest


def make_snapshot(root, files):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (root / '.cache' / 'huggingface').mkdir(parents=True)
    (root / '.cache' / 'huggingface' / 'lock').write_text('x')


def test_manifest_lists_every_file_but_caches_and_itself(tmp_path):
    make_snapshot(tmp_path, {'config.json': b'{}', 'model.safetensors': b'w' * 100, 'sub/tokenizer.json': b'{"t": 1}'})
    manifest = fetch_model.write_manifest(str(tmp_path), source='hub', repo='org/model', revision='a' * 40)
    assert manifest['files'] == {'config.json': 2, 'model.safetensors': 100, 'sub/tokenizer.json': 8}
    assert ModelManifest(str(tmp_path)).check('a' * 40)['up_to_date']


def test_placement_replaces_the_old_model_whole(tmp_path):
    dest = tmp_path / 'phi-4'
    make_snapshot(dest, {'old.bin': b'old'})
    staging = tmp_path / '.staging-phi-4'
    make_snapshot(staging, {'new.bin': b'new'})
    fetch_model.write_manifest(str(staging), source='hub', repo='org/model', revision='b' * 40)
    fetch_model.place(str(staging), str(dest))
    assert sorted(os.listdir(tmp_path)) == ['phi-4']
    assert (dest / 'new.bin').exists() and not (dest / 'old.bin').exists()


@pytest.mark.parametrize('damage, problem', [
    (lambda root: (root / 'model.safetensors').write_bytes(b'short'), 'is 5 bytes, the manifest says 100'),
    (lambda root: (root / 'model.safetensors').unlink(), 'missing file model.safetensors'),
    (lambda root: (root / fetch_model.MANIFEST_NAME).write_text('{'), 'unreadable manifest'),
    (lambda root: (root / fetch_model.MANIFEST_NAME).unlink(), 'no manifest'),
])
def test_damaged_models_are_not_up_to_date(tmp_path, damage, problem):
    make_snapshot(tmp_path, {'config.json': b'{}', 'model.safetensors': b'w' * 100})
    fetch_model.write_manifest(str(tmp_path), source='hub', repo='org/model', revision='a' * 40)
    damage(tmp_path)
    result = ModelManifest(str(tmp_path)).check('a' * 40)
    assert not result['up_to_date']
    assert any(problem in text for text in result['problems']), result['problems']


def test_other_revision_is_not_up_to_date(tmp_path):
    make_snapshot(tmp_path, {'config.json': b'{}'})
    fetch_model.write_manifest(str(tmp_path), source='hub', repo='org/model', revision='a' * 40)
    result = ModelManifest(str(tmp_path)).check('c' * 40)
    assert result['verified'] and not result['up_to_date']


def test_allow_patterns_select_weights_config_and_tokenizer():
    patterns = ['*.json', '*.safetensors', '*.model', '*.txt']
    names = ['config.json', 'model-00001-of-00002.safetensors', 'tokenizer.model', 'pytorch_model.bin', 'README.md']
    assert [name for name in names if fetch_model.wanted(name, patterns)] == names[:3]


def test_disk_space_check_refuses_a_model_that_does_not_fit(tmp_path):
    with pytest.raises(SystemExit, match='not enough disk space'):
        fetch_model.check_space(str(tmp_path), 1024 ** 5)
