# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Day-2 operations on the deployed stack (issue 13): what only a full deployment can show.

- a rerun from a second checkout (other path, other file times, no Python caches) rebuilds and restarts
  nothing (it stands for any rerun: the same checkout differs from it only in what it cannot see);
- the build context on the host holds exactly the image's inputs;
- `site.yml --tags serve` works on its own and changes nothing;
- playbooks/gpu_check.yml reports the endpoint certificate's days left;
- the image build left its step-by-step log.
"""

import os
import shutil
import subprocess

import pytest

PROJECT = os.environ['MOLECULE_PROJECT_DIRECTORY']
BUILD_DIR = '/var/lib/slm-fastchat/image-build'
EXTENSION = os.path.join(PROJECT, 'roles', 'image', 'files', 'slm_fastchat')


def container_starts(host):
    return host.check_output("docker ps -q | xargs docker inspect -f '{{.Name}} {{.State.StartedAt}}'")


def playbook(playbook_path, tmp_path, *args, **env):
    """Run a playbook against Molecule's inventory; return (rc, flattened output)."""
    inventory = os.path.dirname(os.environ['MOLECULE_INVENTORY_FILE'])
    result = subprocess.run(['ansible-playbook', '-i', inventory, playbook_path] + list(args),
                            capture_output=True, text=True, timeout=900, check=False, cwd=str(tmp_path),
                            env=dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', **env))
    return result.returncode, ' '.join((result.stdout + result.stderr).split())


def second_checkout(target):
    """The tracked files of this checkout copied elsewhere, as another operator's clone: new times, no caches."""
    names = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=PROJECT,
                           capture_output=True, check=True).stdout.decode().split('\0')
    root = target / 'ansible_collections' / 'slm' / 'fastchat'
    for name in filter(None, names):
        source = os.path.join(PROJECT, name)
        if os.path.isfile(source):
            os.makedirs(str(root / os.path.dirname(name)), exist_ok=True)
            shutil.copy(source, str(root / name))
    return root


@pytest.mark.parametrize('build_dir', [BUILD_DIR, BUILD_DIR + '-vllm'])
def test_build_context_holds_only_the_inputs(host, build_dir):
    shipped = sorted(name for name in os.listdir(EXTENSION) if name.endswith('.py'))
    on_host = sorted(host.check_output('ls -A %s/slm_fastchat' % build_dir).split())
    assert on_host == shipped
    assert sorted(host.check_output('ls -A %s' % build_dir).split()) \
        == sorted(['Dockerfile', 'constraints.txt', 'ca-bundle.crt', 'slm_fastchat', 'wheels'])


def test_deploy_from_a_second_checkout_rebuilds_and_restarts_nothing(host, tmp_path):
    # The first checkout has run the unit tests (caches with file times) and had its files touched.
    cache = os.path.join(EXTENSION, '__pycache__')
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, 'day2-test.cpython-311.pyc'), 'wb') as handle:
        handle.write(b'\x00day2')
    try:
        for name in os.listdir(EXTENSION):
            os.utime(os.path.join(EXTENSION, name), None)
        root = second_checkout(tmp_path / 'clone')
        before = container_starts(host)
        images = host.check_output("docker images -q 'slm-fastchat*'")
        returncode, output = playbook(str(root / 'site.yml'), tmp_path, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / 'clone'))
        assert returncode == 0, output[-3000:]
        assert 'changed=0' in output, output[-3000:]
        assert container_starts(host) == before
        assert host.check_output("docker images -q 'slm-fastchat*'") == images
    finally:
        os.remove(os.path.join(cache, 'day2-test.cpython-311.pyc'))


def test_tags_serve_alone_works_and_changes_nothing(host, tmp_path):
    before = container_starts(host)
    returncode, output = playbook(os.path.join(PROJECT, 'site.yml'), tmp_path, '--tags', 'serve')
    assert returncode == 0, output[-3000:]
    assert 'serve_image is empty' not in output
    assert 'changed=0' in output, output[-3000:]
    assert container_starts(host) == before


def test_gpu_check_reports_the_certificate_days_left(tmp_path):
    returncode, output = playbook(os.path.join(PROJECT, 'playbooks', 'gpu_check.yml'), tmp_path,
                                  '--tags', 'certificates')
    assert returncode == 0, output[-3000:]
    assert 'days left' in output and ('364 days left' in output or '365 days left' in output), output[-3000:]


@pytest.mark.parametrize('name', ['image-build.log', 'image-build-vllm.log'])
def test_the_build_log_shows_its_steps(host, name):
    log = host.file('/var/lib/slm-fastchat/' + name)
    assert log.exists
    assert 'RUN ' in log.content_string and 'DONE' in log.content_string
