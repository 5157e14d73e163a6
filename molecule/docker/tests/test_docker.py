# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a user of slm.fastchat.docker relies on, checked on the converged test host."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.environ['MOLECULE_PROJECT_DIRECTORY'])
from tests.helpers.playbook import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

TINY_IMAGE = 'slm-fixture/tiny:1'
CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'converge.yml')
ARCHIVE = os.path.join(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'), 'tiny-image.tar')


def test_docker_service_is_running_and_enabled(host):
    service = host.service('docker')
    assert service.is_running
    assert service.is_enabled


def test_compose_is_v2(host):
    out = host.check_output('docker compose version --short')
    assert out.lstrip('v').split('.')[0] == '2', out


def test_buildx_is_available_for_image_builds(host):
    assert host.run('docker buildx version').rc == 0


def test_daemon_json_holds_exactly_the_configured_keys(host):
    daemon = json.loads(host.file('/etc/docker/daemon.json').content_string)
    assert daemon == {
        'bip': '10.213.0.1/24',
        'default-address-pools': [{'base': '10.214.0.0/16', 'size': 24}],
        'log-driver': 'json-file',
        'log-opts': {'max-size': '20m', 'max-file': '3', 'compress': 'true'},
        'live-restore': True,
    }
    assert host.file('/etc/docker/daemon.json').mode == 0o644


def test_running_daemon_uses_the_configuration(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info['LoggingDriver'] == 'json-file'
    assert info['LiveRestoreEnabled'] is True
    bridge = json.loads(host.check_output('docker network inspect bridge'))[0]
    assert bridge['IPAM']['Config'][0]['Subnet'] == '10.213.0.0/24'


@pytest.fixture(scope='module')
def tiny_image(host):
    """Load the fixture image from the control node's archive with community.docker's module."""
    assert os.path.exists(ARCHIVE), 'prepare.yml should have written %s' % ARCHIVE
    host.ansible('ansible.builtin.copy', 'src=%s dest=/tmp/tiny-image.tar mode=0600' % ARCHIVE, check=False)
    result = host.ansible('community.docker.docker_image_load', 'path=/tmp/tiny-image.tar', check=False)
    assert not result.get('failed'), result
    return TINY_IMAGE


def test_container_runs_from_loaded_image(host, tiny_image):
    out = host.check_output('docker run --rm %s echo hello-from-test-host' % tiny_image)
    assert out.strip() == 'hello-from-test-host'


def test_compose_project_takes_its_subnet_from_the_address_pools(host, tiny_image):
    host.check_output(
        'mkdir -p /tmp/compose-check && printf "%%s\\n" "services:" "  app:" "    image: %s"'
        ' "    command: [sleep, \\"300\\"]" > /tmp/compose-check/compose.yaml' % tiny_image)
    result = host.ansible('community.docker.docker_compose_v2',
                          'project_src=/tmp/compose-check project_name=check state=present', check=False)
    try:
        assert not result.get('failed'), result
        network = json.loads(host.check_output('docker network inspect check_default'))[0]
        assert network['IPAM']['Config'][0]['Subnet'].startswith('10.214.'), network['IPAM']
        assert host.check_output('docker compose -p check ps --status running -q app').strip()
    finally:
        host.run('docker compose -p check down')


def docker_invocation(host):
    """systemd's InvocationID changes each time the unit (re)starts."""
    return host.check_output('systemctl show -p InvocationID --value docker')


def test_config_change_restarts_docker_once_and_a_rerun_not_at_all(host, tmp_path):
    before = docker_invocation(host)
    returncode, output = run_playbook(CONVERGE, {'docker_daemon_log_max_file': 4}, tmp_path)
    assert returncode == 0, output[-2000:]
    assert 'RUNNING HANDLER [slm.fastchat.docker : Restart Docker]' in output
    after_change = docker_invocation(host)
    assert after_change != before
    assert json.loads(host.file('/etc/docker/daemon.json').content_string)['log-opts']['max-file'] == '4'

    returncode, output = run_playbook(CONVERGE, {'docker_daemon_log_max_file': 4}, tmp_path)
    assert returncode == 0 and 'changed=0' in output, output[-2000:]
    assert docker_invocation(host) == after_change


def test_check_mode_diff_shows_the_daemon_json_change_without_making_it(host, tmp_path):
    returncode, output = run_playbook(CONVERGE, {'docker_daemon_log_max_file': 7}, tmp_path, check=True, diff=True)
    assert returncode == 0, output[-2000:]
    assert '"max-file": "7"' in output
    assert json.loads(host.file('/etc/docker/daemon.json').content_string)['log-opts']['max-file'] != '7'
