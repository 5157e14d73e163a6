# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one table of platforms the GPU-host roles support, and what each vendor repository offers there.

The docker, nvidia_driver and nvidia_container_toolkit roles read this table
(through the host_platform and nvidia_driver_plan filters) instead of keeping
their own lists, so a platform is supported by all three or refused by all
three with the same message. docs/gpu-hosts.md's support matrix is written
from it; each fact carries where it comes from.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# <distribution>-<version> (Ubuntu: full version; others: major) -> NVIDIA's CUDA repository directory.
PLATFORMS = {
    'Debian-12': {'family': 'Debian', 'cuda_repo': 'debian12'},
    'Debian-13': {'family': 'Debian', 'cuda_repo': 'debian13'},
    'Ubuntu-22.04': {'family': 'Debian', 'cuda_repo': 'ubuntu2204'},
    'Ubuntu-24.04': {'family': 'Debian', 'cuda_repo': 'ubuntu2404'},
    'RedHat-9': {'family': 'RedHat', 'cuda_repo': 'rhel9'},
    'Rocky-9': {'family': 'RedHat', 'cuda_repo': 'rhel9'},
    'AlmaLinux-9': {'family': 'RedHat', 'cuda_repo': 'rhel9'},
}

# ansible_facts.architecture -> the name each packaging world uses for it.
ARCHITECTURES = {
    'x86_64': {'deb': 'amd64', 'rpm': 'x86_64', 'cuda': 'x86_64'},
    'aarch64': {'deb': 'arm64', 'rpm': 'aarch64', 'cuda': 'sbsa'},
}

# NVIDIA's CUDA repositories (developer.download.nvidia.com/compute/cuda/repos/<dir>/<arch>/):
# the signing key published there, its fingerprint, the architectures that
# have a directory, and the first driver branch with packages there.
# - debian13 is signed with a new key (8793F200); the older repositories keep
#   3BF863CC, whose SHA-1 binding Debian 13's sqv rejects from 2026-02-01
#   (NVIDIA/cuda-repo-management issues 30 and 40).
# - debian13 has no branch-580 packages and no sbsa directory
#   (NVIDIA/cuda-repo-management issues 38 and 40, open as of 2026-08).
# - rhel9's D42D0685 fingerprint could not be confirmed from public material
#   here: no fingerprint is enforced for it unless nvidia_driver_repo_key_fingerprint is set.
OLD_DEB_KEY = ('3bf863cc.pub', 'EB693B3035CD5710E231E123A4B469963BF863CC')
CUDA_REPOSITORIES = {
    'debian12': {'key': OLD_DEB_KEY, 'arches': ['x86_64'], 'first_branch': None},
    'debian13': {'key': ('8793F200.pub', '02182E60104FCDC26EAE1B8597A5D4CB8793F200'), 'arches': ['x86_64'],
                 'first_branch': 590},
    'ubuntu2204': {'key': OLD_DEB_KEY, 'arches': ['x86_64', 'sbsa'], 'first_branch': None},
    'ubuntu2404': {'key': OLD_DEB_KEY, 'arches': ['x86_64', 'sbsa'], 'first_branch': None},
    'rhel9': {'key': ('D42D0685.pub', ''), 'arches': ['x86_64', 'sbsa'], 'first_branch': None},
}

# NVIDIA's libnvidia-container repository key (https://nvidia.github.io/libnvidia-container/gpgkey).
TOOLKIT_KEY_FINGERPRINT = 'C95B321B61E88C1809C4F759DDCAE044F796ECB0'

# From branch 590 NVIDIA's Ubuntu packages lost their branch suffix
# (nvidia-utils-580 -> nvidia-utils, nvidia-headless-580-open -> nvidia-headless-open);
# branch locking moved to pinning packages, which this role's apt pin replaces.
UBUNTU_UNSUFFIXED_FROM = 590
# From branch 580 Fabric Manager is nvidia-fabricmanager on NVIDIA's repositories
# (before: nvidia-fabricmanager-<branch> on Ubuntu, nvidia-fabric-manager on RHEL).
FABRIC_MANAGER_UNSUFFIXED_FROM = 580


def platform_name(facts):
    distribution = facts.get('distribution', '')
    if distribution == 'Ubuntu':
        return '%s-%s' % (distribution, facts.get('distribution_version', ''))
    return '%s-%s' % (distribution, facts.get('distribution_major_version', ''))


def host_platform(facts):
    """What the roles need to know about a host from its facts."""
    name = platform_name(facts)
    entry = PLATFORMS.get(name, {})
    architecture = facts.get('architecture', '')
    arch = ARCHITECTURES.get(architecture, {'deb': architecture, 'rpm': architecture, 'cuda': architecture})
    return {
        'name': name,
        'supported': name in PLATFORMS,
        'supported_names': list(PLATFORMS),
        'family': entry.get('family', 'RedHat' if facts.get('os_family') == 'RedHat' else 'Debian'),
        'architecture': architecture,
        'architecture_supported': architecture in ARCHITECTURES,
        'supported_architectures': list(ARCHITECTURES),
        'deb_arch': arch['deb'],
        'rpm_arch': arch['rpm'],
        'cuda_arch': arch['cuda'],
        'cuda_repo': entry.get('cuda_repo', ''),
        'toolkit_key_fingerprint': TOOLKIT_KEY_FINGERPRINT,
    }


def _branch_number(branch):
    return int(branch) if re.match(r'^[0-9]{3}$', str(branch)) else 0


def nvidia_driver_plan(facts, branch, source='auto', open_modules=True, secure_boot=False, signing_key=False):
    """Repository, key, package names and refusals for one host's driver install.

    ``errors`` lists every path that cannot work, each saying why and what to use instead.
    """
    platform = host_platform(facts)
    distribution = facts.get('distribution', '')
    number = _branch_number(branch)
    if source == 'auto':
        source = 'distribution' if distribution == 'Ubuntu' else 'cuda'
    repo = CUDA_REPOSITORIES.get(platform['cuda_repo'], {'key': ('', ''), 'arches': [], 'first_branch': None})
    open_suffix = '-open' if open_modules else ''
    errors = []
    prebuilt = False

    if source == 'cuda' and platform['supported'] and platform['architecture_supported']:
        if platform['cuda_arch'] not in repo['arches']:
            errors.append(
                "NVIDIA's CUDA repository has no %s/%s directory (%s is not published for %s): use an x86_64 host or "
                "another distribution (%s)" % (
                    platform['cuda_repo'], platform['cuda_arch'], platform['name'], platform['architecture'],
                    ', '.join(sorted(set(PLATFORMS[p]['cuda_repo'] for p in PLATFORMS
                                         if 'sbsa' in CUDA_REPOSITORIES[PLATFORMS[p]['cuda_repo']]['arches'])))))
        if repo['first_branch'] and number and number < repo['first_branch']:
            errors.append(
                "nvidia_driver_branch '%s': NVIDIA's %s repository has no branch-%s driver packages (its first "
                "branch is %d; NVIDIA/cuda-repo-management issue 38). Set nvidia_driver_branch to '%d' or later, "
                "or use Debian 12 for branch %s" % (branch, platform['cuda_repo'], branch, repo['first_branch'],
                                                    repo['first_branch'], branch))

    if secure_boot and distribution == 'Ubuntu':
        if source == 'distribution':
            # Canonical's prebuilt modules are signed with Canonical's key, which the shim trusts.
            prebuilt = True
        elif platform['name'] == 'Ubuntu-22.04':
            errors.append(
                "Secure Boot is on and nvidia_driver_source is 'cuda' on Ubuntu 22.04: jammy's dkms (2.8) reads "
                "neither /etc/dkms/framework.conf.d nor mok_signing_key, so the modules it builds would be signed "
                "with the wrong key and refused after the reboot. Use nvidia_driver_source: distribution (Canonical's "
                "prebuilt, signed kernel modules), or Ubuntu 24.04")
    if secure_boot and not prebuilt and not signing_key and not errors:
        errors.append(
            "Secure Boot is enabled and no module signing key is configured, so the NVIDIA kernel modules DKMS "
            "builds would be refused at load. Enroll a Machine Owner Key (mokutil --import <cert.der>, confirmed "
            "at the next boot) and set nvidia_driver_module_signing_key and nvidia_driver_module_signing_certificate "
            "to its files on the host%s, or turn Secure Boot off in the firmware" % (
                "; on Ubuntu, nvidia_driver_source: distribution uses Canonical's signed modules instead"
                if distribution == 'Ubuntu' else ''))

    kernel = facts.get('kernel', '')
    if source == 'distribution':
        if prebuilt:
            packages = ['nvidia-utils-%s-server' % branch, 'nvidia-headless-no-dkms-%s-server%s' % (branch, open_suffix),
                        'linux-modules-nvidia-%s-server%s-%s' % (branch, open_suffix, kernel)]
        else:
            packages = ['nvidia-utils-%s-server' % branch, 'nvidia-headless-%s-server%s' % (branch, open_suffix)]
        fabric_manager = 'nvidia-fabricmanager-%s' % branch
    elif distribution == 'Ubuntu' and number < UBUNTU_UNSUFFIXED_FROM:
        packages = ['nvidia-utils-%s' % branch, 'nvidia-headless-%s%s' % (branch, open_suffix)]
        fabric_manager = 'nvidia-fabricmanager-%s' % branch if number < FABRIC_MANAGER_UNSUFFIXED_FROM \
            else 'nvidia-fabricmanager'
    elif distribution == 'Ubuntu':
        packages = ['nvidia-utils', 'nvidia-headless%s' % open_suffix]
        fabric_manager = 'nvidia-fabricmanager'
    elif platform['family'] == 'RedHat':
        packages = ['nvidia-driver']
        fabric_manager = 'nvidia-fabric-manager' if number < FABRIC_MANAGER_UNSUFFIXED_FROM else 'nvidia-fabricmanager'
    else:
        packages = ['nvidia-driver-cuda', 'nvidia-kernel%s-dkms' % open_suffix, 'nvidia-persistenced']
        fabric_manager = 'nvidia-fabricmanager'

    return {
        'source': source,
        'repo_dir': '%s/%s' % (platform['cuda_repo'], platform['cuda_arch']),
        'key_file': repo['key'][0],
        'key_fingerprint': repo['key'][1],
        'packages': packages,
        'fabric_manager_package': fabric_manager,
        'prebuilt_signed_modules': prebuilt,
        'errors': errors,
    }
