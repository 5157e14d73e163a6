# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection builds into a tarball that installs without Galaxy and whose roles document themselves."""

import os
import subprocess
import tarfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*argv, **kwargs):
    """Run outside the checkout, so its ansible.cfg and collection link cannot stand in for the install."""
    env = dict(os.environ, ANSIBLE_NOCOLOR='1')
    for name in ('ANSIBLE_COLLECTIONS_PATH', 'ANSIBLE_CONFIG'):
        env.pop(name, None)
    env.update(kwargs.pop('env', {}))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=env,
                            cwd=kwargs.pop('cwd', '/'), **kwargs)
    assert result.returncode == 0, '%s failed:\n%s\n%s' % (' '.join(argv), result.stdout, result.stderr)
    return result.stdout


def test_build_and_offline_install(tmp_path):
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        galaxy = yaml.safe_load(handle)
    run('ansible-galaxy', 'collection', 'build', '--output-path', str(tmp_path), REPO)
    tarball = tmp_path / ('slm-fastchat-%s.tar.gz' % galaxy['version'])
    assert tarball.exists()

    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert 'roles/docker/meta/argument_specs.yml' in names
    assert 'plugins/filter/address_pool_errors.py' in names
    assert 'meta/runtime.yml' in names
    # Development-only content stays out of the artifact.
    assert not any(name.startswith(('.venv', '.cache', 'molecule/', 'tests/images')) for name in names)

    # --offline: dependencies must be satisfied by the collections the pinned
    # `ansible` package bundles, never fetched from Galaxy.
    target = tmp_path / 'installed'
    run('ansible-galaxy', 'collection', 'install', '--offline', '-p', str(target), str(tarball))
    assert (target / 'ansible_collections' / 'slm' / 'fastchat' / 'MANIFEST.json').exists()

    out = run('ansible-doc', '-t', 'role', 'slm.fastchat.docker', env={'ANSIBLE_COLLECTIONS_PATH': str(target)})
    assert 'docker_install_source' in out and 'docker_daemon_default_address_pools' in out
    out = run('ansible-doc', '-t', 'filter', 'slm.fastchat.address_pool_errors',
              env={'ANSIBLE_COLLECTIONS_PATH': str(target)})
    assert 'default-address-pools' in out


def test_dependencies_are_bundled_by_the_pinned_ansible():
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        dependencies = yaml.safe_load(handle)['dependencies']
    listed = run('ansible-galaxy', 'collection', 'list', '--format', 'yaml')
    installed = {}
    for collections in yaml.safe_load(listed).values():
        installed.update({name: info['version'] for name, info in collections.items()})
    from ansible.galaxy.dependency_resolution.versioning import meets_requirements
    for name, spec in dependencies.items():
        assert name in installed, '%s is not bundled' % name
        assert meets_requirements(installed[name], spec), '%s %s does not satisfy %s' % (name, installed[name], spec)
