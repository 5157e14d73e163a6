# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API-server entry point keeps keys off the command line."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'image', 'files'))
from slm_fastchat.api_server import main, read_api_keys  # noqa: E402  pylint: disable=wrong-import-position


def test_keys_are_read_one_per_line_skipping_comments(tmp_path):
    path = tmp_path / 'keys'
    path.write_text('# clients\nsk-one\n\n  sk-two  \n')
    assert read_api_keys(str(path)) == ['sk-one', 'sk-two']


@pytest.mark.parametrize('content, message', [
    ('', 'lists no API keys'),
    ('# only a comment\n', 'lists no API keys'),
    ('sk-one,sk-two\n', 'key 1 contains whitespace or a comma'),
    ('sk-one\nsk two\n', 'key 2 contains whitespace or a comma'),
])
def test_bad_key_files_are_refused(tmp_path, content, message):
    path = tmp_path / 'keys'
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_api_keys(str(path))


def test_keys_on_the_command_line_are_refused():
    with pytest.raises(SystemExit, match='refusing --api-keys'):
        main(['--api-keys', 'sk-visible-in-ps'])
    with pytest.raises(SystemExit, match='refusing --api-keys'):
        main(['--api-keys=sk-visible-in-ps'])


def test_starting_without_keys_is_refused(monkeypatch):
    monkeypatch.delenv('SLM_FASTCHAT_API_KEYS_FILE', raising=False)
    with pytest.raises(SystemExit, match='refuses to serve without API keys'):
        main(['--port', '8000'])
