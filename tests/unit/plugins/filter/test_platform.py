# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform table, the driver plan per platform/source/branch, and version listings with their real formats.

Each row is one real-host path (issue 12): the right key per repository, the
branches and architectures a repository lacks, Secure Boot paths, package
names by branch, RPM release strings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.slm.fastchat.plugins.filter.host_platform import FilterModule
from ansible_collections.slm.fastchat.plugins.module_utils._package_versions import (
    package_version_matches, package_versions, versionlock_changes)
from ansible_collections.slm.fastchat.plugins.module_utils._platforms import (
    PLATFORMS, host_platform, nvidia_driver_plan)


def facts(distribution, version, architecture='x86_64', kernel='6.8.0-48-generic'):
    family = 'RedHat' if distribution in ('RedHat', 'Rocky', 'AlmaLinux') else 'Debian'
    return {'distribution': distribution, 'distribution_version': version,
            'distribution_major_version': version.split('.')[0], 'os_family': family,
            'architecture': architecture, 'kernel': kernel}


DEBIAN13 = facts('Debian', '13.2')
DEBIAN12 = facts('Debian', '12.12')
JAMMY = facts('Ubuntu', '22.04', kernel='5.15.0-119-generic')
NOBLE = facts('Ubuntu', '24.04')
ROCKY9 = facts('Rocky', '9.6')
ALMA9 = facts('AlmaLinux', '9.6')


def test_filters_are_exported():
    assert set(FilterModule().filters()) == {'host_platform', 'nvidia_driver_plan', 'package_versions',
                                             'package_version_matches', 'versionlock_changes'}


@pytest.mark.parametrize('host, name, supported, deb, rpm, cuda, repo', [
    (DEBIAN13, 'Debian-13', True, 'amd64', 'x86_64', 'x86_64', 'debian13'),
    (facts('Debian', '12.12', 'aarch64'), 'Debian-12', True, 'arm64', 'aarch64', 'sbsa', 'debian12'),
    (NOBLE, 'Ubuntu-24.04', True, 'amd64', 'x86_64', 'x86_64', 'ubuntu2404'),
    (ROCKY9, 'Rocky-9', True, 'amd64', 'x86_64', 'x86_64', 'rhel9'),
    # One table for all roles: AlmaLinux 9 is in it for the NVIDIA roles too.
    (ALMA9, 'AlmaLinux-9', True, 'amd64', 'x86_64', 'x86_64', 'rhel9'),
    (facts('Ubuntu', '20.04'), 'Ubuntu-20.04', False, 'amd64', 'x86_64', 'x86_64', ''),
])
def test_host_platform(host, name, supported, deb, rpm, cuda, repo):
    result = host_platform(host)
    assert (result['name'], result['supported'], result['deb_arch'], result['rpm_arch'], result['cuda_arch'],
            result['cuda_repo']) == (name, supported, deb, rpm, cuda, repo)
    assert result['supported_names'] == list(PLATFORMS)


def test_an_unknown_architecture_is_not_supported():
    assert not host_platform(facts('Debian', '13', 'ppc64le'))['architecture_supported']


@pytest.mark.parametrize('host, key_file, fingerprint', [
    # Issue 12 item 1: debian13 has its own key; the older repositories keep 3BF863CC.
    (DEBIAN13, '8793F200.pub', '02182E60104FCDC26EAE1B8597A5D4CB8793F200'),
    (DEBIAN12, '3bf863cc.pub', 'EB693B3035CD5710E231E123A4B469963BF863CC'),
    (NOBLE, '3bf863cc.pub', 'EB693B3035CD5710E231E123A4B469963BF863CC'),
    (JAMMY, '3bf863cc.pub', 'EB693B3035CD5710E231E123A4B469963BF863CC'),
    (ROCKY9, 'D42D0685.pub', ''),
])
def test_each_cuda_repository_has_its_own_key(host, key_file, fingerprint):
    plan = nvidia_driver_plan(host, '590', 'cuda')
    assert (plan['key_file'], plan['key_fingerprint']) == (key_file, fingerprint)


@pytest.mark.parametrize('host, branch, source, expected', [
    # Issue 12 item 2: no branch 580 and no arm64 directory in NVIDIA's debian13 repository.
    (DEBIAN13, '580', 'auto', ["NVIDIA's debian13 repository has no branch-580 driver packages (its first branch "
                               "is 590", "Set nvidia_driver_branch to '590' or later, or use Debian 12"]),
    (DEBIAN13, '570', 'cuda', ['no branch-570 driver packages']),
    (facts('Debian', '13', 'aarch64'), '590', 'cuda', ["NVIDIA's CUDA repository has no debian13/sbsa directory",
                                                       'rhel9, ubuntu2204, ubuntu2404']),
    (facts('Debian', '12', 'aarch64'), '580', 'cuda', ['no debian12/sbsa directory']),
])
def test_paths_the_repository_cannot_serve_are_refused_with_what_to_use(host, branch, source, expected):
    errors = nvidia_driver_plan(host, branch, source)['errors']
    for text in expected:
        assert text in ' '.join(errors), errors


@pytest.mark.parametrize('host, branch', [
    (DEBIAN13, '590'), (DEBIAN13, '595'), (DEBIAN12, '580'), (NOBLE, '580'),
    (facts('Ubuntu', '24.04', 'aarch64'), '580'), (ROCKY9, '580'),
])
def test_paths_the_repository_serves_are_not_refused(host, branch):
    assert nvidia_driver_plan(host, branch, 'cuda')['errors'] == []


@pytest.mark.parametrize('host, branch, source, secure_boot, key, refused, prebuilt', [
    # Issue 12 item 6: jammy's dkms 2.8 cannot sign with the MOK key.
    (JAMMY, '580', 'cuda', True, True, "jammy's dkms (2.8)", False),
    (JAMMY, '580', 'cuda', True, False, "jammy's dkms (2.8)", False),
    # Canonical's prebuilt modules are signed by Canonical: no key needed, on both Ubuntu releases.
    (JAMMY, '580', 'distribution', True, False, None, True),
    (NOBLE, '580', 'auto', True, False, None, True),
    # DKMS elsewhere signs with an enrolled key; without one the path is refused.
    (NOBLE, '580', 'cuda', True, True, None, False),
    (NOBLE, '580', 'cuda', True, False, "nvidia_driver_source: distribution uses Canonical's signed modules", False),
    (DEBIAN13, '590', 'cuda', True, False, 'Secure Boot is enabled and no module signing key is configured', False),
    (DEBIAN13, '590', 'cuda', True, True, None, False),
    (JAMMY, '580', 'cuda', False, False, None, False),
])
def test_secure_boot_paths(host, branch, source, secure_boot, key, refused, prebuilt):
    plan = nvidia_driver_plan(host, branch, source, True, secure_boot, key)
    if refused:
        assert refused in ' '.join(plan['errors']), plan['errors']
    else:
        assert plan['errors'] == []
    assert plan['prebuilt_signed_modules'] is prebuilt


@pytest.mark.parametrize('host, branch, source, open_modules, secure_boot, packages, fabric_manager', [
    (DEBIAN13, '590', 'cuda', True, False,
     ['nvidia-driver-cuda', 'nvidia-kernel-open-dkms', 'nvidia-persistenced'], 'nvidia-fabricmanager'),
    (DEBIAN12, '580', 'cuda', False, False,
     ['nvidia-driver-cuda', 'nvidia-kernel-dkms', 'nvidia-persistenced'], 'nvidia-fabricmanager'),
    (NOBLE, '580', 'distribution', True, False,
     ['nvidia-utils-580-server', 'nvidia-headless-580-server-open'], 'nvidia-fabricmanager-580'),
    # Secure Boot on Ubuntu: Canonical's signed modules for the running kernel, no DKMS package.
    (JAMMY, '580', 'distribution', True, True,
     ['nvidia-utils-580-server', 'nvidia-headless-no-dkms-580-server-open',
      'linux-modules-nvidia-580-server-open-5.15.0-119-generic'], 'nvidia-fabricmanager-580'),
    (NOBLE, '570', 'cuda', True, False, ['nvidia-utils-570', 'nvidia-headless-570-open'], 'nvidia-fabricmanager-570'),
    (NOBLE, '580', 'cuda', True, False, ['nvidia-utils-580', 'nvidia-headless-580-open'], 'nvidia-fabricmanager'),
    # Issue 12 item 8: from 590 NVIDIA's Ubuntu packages have no branch suffix.
    (NOBLE, '590', 'cuda', True, False, ['nvidia-utils', 'nvidia-headless-open'], 'nvidia-fabricmanager'),
    (NOBLE, '595', 'cuda', False, False, ['nvidia-utils', 'nvidia-headless'], 'nvidia-fabricmanager'),
    (ROCKY9, '570', 'cuda', True, False, ['nvidia-driver'], 'nvidia-fabric-manager'),
    (ROCKY9, '580', 'cuda', True, False, ['nvidia-driver'], 'nvidia-fabricmanager'),
])
def test_package_names_by_source_distribution_and_branch(host, branch, source, open_modules, secure_boot, packages,
                                                         fabric_manager):
    plan = nvidia_driver_plan(host, branch, source, open_modules, secure_boot, False)
    assert plan['packages'] == packages
    assert plan['fabric_manager_package'] == fabric_manager


def test_auto_source_is_canonical_on_ubuntu_and_nvidia_elsewhere():
    assert nvidia_driver_plan(NOBLE, '580')['source'] == 'distribution'
    assert nvidia_driver_plan(DEBIAN13, '590')['source'] == 'cuda'
    assert nvidia_driver_plan(ROCKY9, '580')['repo_dir'] == 'rhel9/x86_64'
    assert nvidia_driver_plan(facts('Ubuntu', '24.04', 'aarch64'), '580', 'cuda')['repo_dir'] == 'ubuntu2404/sbsa'


# What the tools print (recorded formats).
MADISON = [
    'nvidia-driver-cuda | 595.58.03-1 | http://127.0.0.1:8089/cuda/repos/debian13/x86_64  Packages',
    'nvidia-driver-cuda | 590.48.01-1 | http://127.0.0.1:8089/cuda/repos/debian13/x86_64  Packages',
    'nvidia-driver-cuda | 590.44.01-1 | http://127.0.0.1:8089/cuda/repos/debian13/x86_64  Packages',
]
DOCKER_MADISON = [' docker-ce | 5:27.3.1-1~debian.12~bookworm | https://download.docker.com/linux/debian bookworm/stable amd64 Packages']
DNF_DRIVER = [
    'Available Packages',
    'nvidia-driver.x86_64                 3:580.82.07-1.el9                 cuda-rhel9-x86_64',
    'nvidia-driver.x86_64                 3:580.95.05-1.el9                 cuda-rhel9-x86_64',
    'nvidia-driver.x86_64                 3:590.44.01-1.el9                 cuda-rhel9-x86_64',
]
DNF_DOCKER = [
    'Installed Packages',
    'docker-ce.x86_64                     3:27.3.1-1.el9                    @docker-ce-stable',
    'Available Packages',
    'docker-ce.x86_64                     3:27.3.1-1.el9                    docker-ce-stable',
    'docker-ce.x86_64                     3:28.0.1-1.el9                    docker-ce-stable',
]


@pytest.mark.parametrize('lines, family, expected', [
    (MADISON, 'Debian', ['595.58.03-1', '590.48.01-1', '590.44.01-1']),
    (DOCKER_MADISON, 'Debian', ['5:27.3.1-1~debian.12~bookworm']),
    (DNF_DRIVER, 'RedHat', ['590.44.01-1.el9', '580.95.05-1.el9', '580.82.07-1.el9']),
    (DNF_DOCKER, 'RedHat', ['28.0.1-1.el9', '27.3.1-1.el9']),
    ([], 'RedHat', []),
])
def test_package_versions_read_both_listings_newest_first(lines, family, expected):
    assert package_versions(lines, family) == expected


@pytest.mark.parametrize('versions, pin, expected', [
    (['590.48.01-1', '590.44.01-1'], '590.44.01-1', ['590.44.01-1']),
    (['590.48.01-1', '590.44.01-1'], '590.4*', ['590.48.01-1', '590.44.01-1']),
    (['590.48.01-1', '590.44.01-1'], '590.1.2-1', []),
    # Issue 12 item 9: the documented pin format matches RHEL's release with its dist tag.
    (['590.44.01-1.el9', '580.95.05-1.el9'], '580.95.05-1', ['580.95.05-1.el9']),
    (['580.95.05-1.el9'], '580.95.05-1.el9', ['580.95.05-1.el9']),
    (['580.95.05-1.el9_4'], '580.95.05-1', ['580.95.05-1.el9_4']),
    (['580.95.05-10.el9'], '580.95.05-1', []),
    (['27.3.1-1.el9'], '3:27.3.1-1', ['27.3.1-1.el9']),
    (['5:27.3.1-1~debian.12~bookworm'], '5:27.3.1-1~debian.12~bookworm', ['5:27.3.1-1~debian.12~bookworm']),
    (['580.95.05-0ubuntu0.24.04.2'], '580.95.05-0ubuntu0.24.04.2', ['580.95.05-0ubuntu0.24.04.2']),
    (['580.95.05-1'], '', ['580.95.05-1']),
])
def test_package_version_matches(versions, pin, expected):
    assert package_version_matches(versions, pin) == expected


PROBE_INSTALLED = ['INSTALLED', 'nvidia-driver-3:580.95.05-1.el9.*', 'kmod-nvidia-open-dkms-3:580.95.05-1.el9.*']


@pytest.mark.parametrize('locked, packages, hold, add, delete', [
    # Issue 12 item 3: after a new pin the lock still names the old version; it moves to the installed one.
    (['nvidia-driver-3:580.82.07-1.el9.*', 'kmod-nvidia-open-dkms-3:580.82.07-1.el9.*', 'docker-ce-3:27.3.1-1.el9.*'],
     ['nvidia-driver', 'kmod-nvidia*'], True,
     ['nvidia-driver-3:580.95.05-1.el9.*', 'kmod-nvidia-open-dkms-3:580.95.05-1.el9.*'],
     ['nvidia-driver-3:580.82.07-1.el9.*', 'kmod-nvidia-open-dkms-3:580.82.07-1.el9.*']),
    # Already right: nothing to do (idempotent).
    (['# Added lock on Sun Nov 29', 'nvidia-driver-3:580.95.05-1.el9.*', 'kmod-nvidia-open-dkms-3:580.95.05-1.el9.*'],
     ['nvidia-driver', 'kmod-nvidia*'], True, [], []),
    # Releasing deletes only these packages' locks.
    (['nvidia-driver-3:580.95.05-1.el9.*', 'nvidia-driver-cuda-3:580.95.05-1.el9.*', 'docker-ce-3:27.3.1-1.el9.*'],
     ['nvidia-driver'], False, [], ['nvidia-driver-3:580.95.05-1.el9.*']),
    # Issue 12 item 4: without the versionlock plugin the lock list is empty; releasing changes nothing.
    ([], ['nvidia-driver', 'kmod-nvidia*'], False, [], []),
])
def test_versionlock_changes(locked, packages, hold, add, delete):
    assert versionlock_changes(PROBE_INSTALLED + ['LOCKED'] + locked, packages, hold) == {'add': add, 'delete': delete}
