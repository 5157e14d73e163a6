# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each wrong input fails the docker role with a message naming the variable, and changes nothing."""

import os
import sys

import pytest

sys.path.insert(0, os.environ['MOLECULE_PROJECT_DIRECTORY'])
from tests.helpers.playbook import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'converge.yml')

CASES = {
    'unknown install source': (
        {'docker_install_source': 'snap'},
        ['docker_install_source', 'auto, distribution, docker']),
    'pool base with host bits': (
        {'docker_daemon_default_address_pools': [{'base': '10.214.0.1/16', 'size': 24}]},
        ['docker_daemon_default_address_pools[0].base', 'host bits zero']),
    'pool without size': (
        {'docker_daemon_default_address_pools': [{'base': '10.214.0.0/16'}]},
        ['docker_daemon_default_address_pools[0]', "'base' and 'size'"]),
    'bridge address on the network address': (
        {'docker_daemon_bip': '10.213.0.0/24'},
        ['docker_daemon_bip', 'network or broadcast address']),
    'version the repository does not have': (
        {'docker_version': '99.99.99*'},
        ["docker_version '99.99.99*' is not in the repository", 'Available: 26.']),
    'version that is not a version': (
        {'docker_version': 'latest'},
        ["docker_version 'latest' is not a package version"]),
    'log rotation out of range': (
        {'docker_daemon_log_max_file': 0},
        ['docker_daemon_log_max_file between 1 and 100']),
    'contribution that is not a dict': (
        {'docker_daemon_options_broken': 'runtime=nvidia'},
        ['docker_daemon_options_broken']),
}


@pytest.mark.parametrize('extra_vars, expected', list(CASES.values()), ids=list(CASES))
def test_bad_input_fails_naming_the_variable(extra_vars, expected, tmp_path):
    returncode, output = run_playbook(CONVERGE, extra_vars, tmp_path)
    assert returncode != 0, output[-2000:]
    for text in expected:
        assert text in output, output[-2000:]
    assert 'changed=0' in output, 'the failed run changed the host:\n' + output[-2000:]


def test_host_is_untouched_after_every_bad_input(host):
    """Runs last (pytest keeps file order): nothing the role would install or write exists."""
    assert not host.package('docker.io').is_installed
    assert not host.file('/etc/docker').exists
    assert not host.file('/etc/apt/sources.list.d/docker.sources').exists
    assert not host.file('/etc/apt/keyrings/docker.asc').exists
