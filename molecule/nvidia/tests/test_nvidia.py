# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU host preparation against stand-ins for NVIDIA's repositories (no GPU here).

The packages are test fixtures with NVIDIA's real names and versions and stub
programs (tests/fixtures/nvidia/make_repos.py): what these tests prove is the
roles' repository, pin, hold, daemon.json, CDI and input logic, not that a
driver loads. docs/gpu-hosts.md says what needs a real GPU host.
"""

import json
import os
import sys

import pytest
import yaml

sys.path.insert(0, os.environ['MOLECULE_PROJECT_DIRECTORY'])
from tests.helpers.playbook import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = os.path.join(SCENARIO, 'roles.yml')

GPU_CHECK = os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'playbooks', 'gpu_check.yml')
PINNED = '590.44.01-1'
NEWER = '590.48.01-1'
FAKE = os.path.join(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', ''), 'fake-nvidia')
CUDA_REPO = 'http://127.0.0.1:8089/cuda/repos/debian13/x86_64/'
DRIVER_PACKAGES = ['nvidia-driver-cuda', 'nvidia-kernel-open-dkms', 'nvidia-persistenced', 'nvidia-fabricmanager']
TOOLKIT_PACKAGES = ['nvidia-container-toolkit', 'nvidia-container-toolkit-base', 'libnvidia-container-tools',
                    'libnvidia-container1']
NO_PCI = '/var/tmp/no-nvidia-pci'


def version(host, package):
    return host.check_output("dpkg-query -W -f '${Version}' %s" % package)


def held(host):
    return host.check_output('apt-mark showhold').split()


@pytest.mark.parametrize('name, uri', [
    ('nvidia-cuda', 'http://127.0.0.1:8089/cuda/repos/debian13/x86_64/'),
    ('nvidia-container-toolkit', 'http://127.0.0.1:8089/libnvidia-container/stable/deb/amd64'),
])
def test_repositories_are_deb822_sources_trusting_their_own_key_only(host, name, uri):
    source = host.file('/etc/apt/sources.list.d/%s.sources' % name)
    assert source.mode == 0o644
    assert 'URIs: %s\n' % uri in source.content_string
    assert 'Suites: /\n' in source.content_string
    assert 'Signed-By: /etc/apt/keyrings/%s.asc\n' % name in source.content_string
    assert host.file('/etc/apt/keyrings/%s.asc' % name).content_string.startswith('-----BEGIN PGP PUBLIC KEY BLOCK-----')
    # Nothing was added to the global keyring, which would trust the key for every repository.
    assert not host.file('/etc/apt/trusted.gpg').exists


def test_debian13_repository_is_trusted_with_its_own_key_not_the_older_distributions(host):
    """debian13 is signed with 8793F200; 3bf863cc.pub (the older repositories' key) would not verify it."""
    with open(os.path.join(FAKE, 'cuda', 'repos', 'debian13', 'x86_64', '8793F200.pub')) as handle:
        assert host.file('/etc/apt/keyrings/nvidia-cuda.asc').content_string == handle.read()


def test_driver_is_the_pinned_version_not_the_newest_of_branch_or_repository(host):
    policy = host.check_output('apt-cache policy nvidia-driver-cuda')
    assert NEWER in policy and '595.58.03-1' in policy, policy
    for package in DRIVER_PACKAGES + ['libcuda1']:
        assert version(host, package) == PINNED, package


def test_driver_packages_are_held_and_apt_is_pinned_to_the_version(host):
    assert set(DRIVER_PACKAGES) <= set(held(host))
    preferences = host.file('/etc/apt/preferences.d/slm-fastchat-nvidia-driver').content_string
    assert 'Pin: version %s\n' % PINNED in preferences
    # A plain upgrade would take nothing: the pin outranks the newer versions.
    upgrade = host.check_output('apt-get -s upgrade')
    assert 'Inst libcuda1' not in upgrade and 'Inst nvidia-' not in upgrade, upgrade


def test_kernel_headers_for_the_running_kernel_and_nouveau_blacklisted(host):
    assert host.package('linux-headers-%s' % host.check_output('uname -r')).is_installed
    blacklist = host.file('/etc/modprobe.d/slm-fastchat-blacklist-nouveau.conf').content_string
    assert 'blacklist nouveau\n' in blacklist and 'options nouveau modeset=0\n' in blacklist


@pytest.mark.parametrize('unit', ['nvidia-persistenced', 'nvidia-fabricmanager'])
def test_persistence_daemon_and_fabric_manager_run_on_an_nvswitch_host(host, unit):
    service = host.service(unit)
    assert service.is_enabled
    assert service.is_running


def test_persistence_mode_is_on_in_the_gpus_not_only_the_daemon_running(host):
    """The packaged unit passes --no-persistence-mode (as Ubuntu's does); a drop-in turns it on."""
    dropin = host.file('/etc/systemd/system/nvidia-persistenced.service.d/slm-fastchat-persistence.conf').content_string
    assert 'ExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user root --persistence-mode --verbose\n' in dropin
    modes = host.check_output('nvidia-smi --query-gpu=persistence_mode --format=csv,noheader').split()
    assert modes == ['Enabled'] * 8, modes


def test_container_toolkit_is_the_pinned_version_and_held(host):
    for package in TOOLKIT_PACKAGES:
        assert version(host, package) == '1.17.8-1', package
    assert set(TOOLKIT_PACKAGES) <= set(held(host))


def test_daemon_json_gains_the_nvidia_runtime_and_keeps_every_other_key(host):
    config = json.loads(host.file('/etc/docker/daemon.json').content_string)
    assert config['runtimes'] == {'nvidia': {'path': 'nvidia-container-runtime', 'args': []}}
    assert 'default-runtime' not in config
    assert config['live-restore'] is True
    assert config['bip'] == '10.243.0.1/24'
    assert config['default-address-pools'] == [{'base': '10.244.0.0/16', 'size': 24}]
    assert config['log-opts'] == {'max-size': '10m', 'max-file': '3'}
    info = json.loads(host.check_output("docker info --format '{{json .Runtimes}}'"))
    assert 'nvidia' in info


def test_docker_restarted_exactly_once_for_the_runtime(host):
    """Prepare recorded Docker's invocation; converge restarts it once, the idempotence run never."""
    before = host.file('/var/tmp/docker-invocation-before').content_string.strip()
    # Invocation IDs in the order the journal first saw them.
    invocations = host.check_output(
        "journalctl -u docker -o json | python3 -c 'import json, sys; ids = [json.loads(l).get(\"_SYSTEMD_INVOCATION_ID\") "
        "for l in sys.stdin]; print(*dict.fromkeys(i for i in ids if i))'").split()
    assert before in invocations, invocations
    since = invocations[invocations.index(before) + 1:]
    assert since == [host.check_output('systemctl show -p InvocationID --value docker')], invocations


def test_cdi_specification_lists_every_gpu(host):
    spec = yaml.safe_load(host.file('/etc/cdi/nvidia.yaml').content_string)
    assert spec['kind'] == 'nvidia.com/gpu'
    assert sorted(device['name'] for device in spec['devices']) == sorted([str(i) for i in range(8)] + ['all'])


def test_check_mode_diff_shows_a_new_pin_without_making_it(host, tmp_path):
    returncode, output = run_playbook(ROLES, {'nvidia_driver_version': NEWER}, tmp_path,
                                      check=True, diff=True)
    assert returncode == 0, output[-3000:]
    assert '-Pin: version %s +Pin: version %s' % (PINNED, NEWER) in output, output[-3000:]
    assert version(host, 'nvidia-driver-cuda') == PINNED


def test_gpu_check_reports_the_host_and_changes_nothing(host, tmp_path):
    """The fleet check reads the real PCI bus here (no NVIDIA device; the names come from the stand-in nvidia-smi)."""
    returncode, output = run_playbook(GPU_CHECK, {}, tmp_path)
    assert returncode == 0, output[-3000:]
    assert 'slm-nvidia: 0 NVIDIA GPU(s) on the bus (NVIDIA H100 80GB HBM3), NVSwitch: False, driver: ok 590.44.01.' in output
    assert 'no FastChat image on the host yet, so container GPU access was not checked' in output
    assert 'changed=0' in output


@pytest.fixture
def no_gpus(host):
    host.run('mkdir -p %s' % NO_PCI)
    return {'nvidia_driver_pci_devices_path': NO_PCI}


def test_host_without_gpus_is_skipped_by_both_roles_with_the_reason(no_gpus, tmp_path):
    returncode, output = run_playbook(ROLES, dict(no_gpus, nvidia_driver_required=False), tmp_path)
    assert returncode == 0, output[-3000:]
    assert 'slm-nvidia has no NVIDIA GPU on its PCI bus: nothing to install' in output
    assert 'slm-nvidia has no NVIDIA GPU on its PCI bus: no container toolkit needed' in output
    assert 'changed=0' in output


def test_host_that_must_have_gpus_fails_before_any_change(no_gpus, tmp_path):
    returncode, output = run_playbook(ROLES, dict(no_gpus, nvidia_driver_required=True), tmp_path)
    assert returncode != 0
    assert 'nvidia_driver_required is true for slm-nvidia, but it has no NVIDIA GPU on its PCI bus' in output
    assert 'changed=0' in output, output[-3000:]


BAD_INPUTS = {
    'branch that is not three digits': (
        None, {'nvidia_driver_branch': 'r580'}, ["nvidia_driver_branch 'r580' is not a driver branch"]),
    'version pin outside the branch': (
        None, {'nvidia_driver_version': '580.95.05-1'},
        ["nvidia_driver_version '580.95.05-1' does not belong to nvidia_driver_branch '590'"]),
    'version pin the repository does not have': (
        None, {'nvidia_driver_version': '590.1.2-1'},
        ["nvidia_driver_version '590.1.2-1' is not in the repository for nvidia-driver-cuda",
         'Available: 595.58.03-1, 590.48.01-1, 590.44.01-1']),
    # The role's default branch: NVIDIA publishes no 580 for Debian 13.
    'branch 580 on Debian 13': (
        None, {'nvidia_driver_branch': '580', 'nvidia_driver_version': ''},
        ["slm-nvidia (Debian-13): nvidia_driver_branch '580': NVIDIA's debian13 repository has no branch-580 driver "
         "packages (its first branch is 590", "Set nvidia_driver_branch to '590' or later"]),
    # What the role fetched for every distribution before: the older repositories' key.
    'repository key with another fingerprint': (
        None, {'nvidia_driver_repo_key_url': CUDA_REPO + '3bf863cc.pub'},
        ['The key at %s3bf863cc.pub has fingerprint' % CUDA_REPO, 'nvidia_driver_repo_key_fingerprint']),
    'unknown package source': (
        None, {'nvidia_driver_source': 'runfile'}, ['nvidia_driver_source', 'auto, distribution, cuda']),
    "Canonical's packages on Debian": (
        None, {'nvidia_driver_source': 'distribution'}, ["nvidia_driver_source 'distribution' means Canonical's packages"]),
    'signing key without its certificate': (
        None, {'nvidia_driver_module_signing_key': '/root/mok.key'},
        ['nvidia_driver_module_signing_key and nvidia_driver_module_signing_certificate go together']),
    'toolkit version that is not a version': (
        None, {'nvidia_container_toolkit_version': 'latest'},
        ["nvidia_container_toolkit_version 'latest' is not a package version"]),
}


@pytest.fixture
def secure_boot_on(host):
    """A stand-in mokutil that reports Secure Boot on (test stub: there is no EFI here)."""
    host.run("printf '#!/bin/sh\\necho SecureBoot enabled\\n' > /usr/local/bin/mokutil && chmod 755 /usr/local/bin/mokutil")
    yield
    host.run('rm -f /usr/local/bin/mokutil')


@pytest.fixture
def pretend_ubuntu_2004(host):
    """The host reports Ubuntu 20.04 through /etc/os-release, which fact gathering reads."""
    host.run('mv /etc/os-release /var/tmp/os-release.real && printf '
             '\'NAME="Ubuntu"\\nID=ubuntu\\nID_LIKE=debian\\nVERSION_ID="20.04"\\nVERSION_CODENAME=focal\\n\' '
             '> /etc/os-release')
    yield
    host.run('rm -f /etc/os-release && mv /var/tmp/os-release.real /etc/os-release')


BAD_INPUTS.update({
    'Secure Boot on without a signing key': (
        'secure_boot_on', {},
        ['slm-nvidia (Debian-13): Secure Boot is enabled and no module signing key is configured',
         'nvidia_driver_module_signing_key']),
    'unsupported OS': (
        'pretend_ubuntu_2004', {},
        ['slm.fastchat.nvidia_driver supports Debian-12, Debian-13, Ubuntu-22.04, Ubuntu-24.04, RedHat-9, Rocky-9, '
         'AlmaLinux-9 on x86_64, aarch64', 'slm-nvidia is Ubuntu-20.04 on x86_64']),
})


@pytest.mark.parametrize('condition, extra_vars, expected', list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_fails_before_installing_naming_the_variable_or_fact(
        host, request, condition, extra_vars, expected, tmp_path):
    """A wrong variable, or a host fact the roles cannot work with (set up by the fixture named in `condition`)."""
    if condition:
        request.getfixturevalue(condition)
    returncode, output = run_playbook(ROLES, extra_vars, tmp_path)
    assert returncode != 0, output[-3000:]
    for text in expected:
        assert text in output, output[-3000:]
    assert 'changed=0' in output, output[-3000:]


# Last (it changes the driver back and forth); every test takes `host` so
# pytest keeps this file's order.
def test_a_new_pin_moves_the_held_driver_up_and_back_and_settings_switched_off_leave(host, tmp_path):
    """Also: a stale key is replaced (keys refresh), and files of settings that are now off go away."""
    stale = {
        # The older repositories' key where debian13's belongs (a rotated key looks the same).
        '/etc/apt/keyrings/nvidia-cuda.asc': os.path.join(FAKE, 'cuda', 'repos', 'debian13', 'x86_64', '3bf863cc.pub'),
    }
    for dest, source in stale.items():
        with open(source) as handle:
            host.run("cat > %s <<'KEY'\n%sKEY" % (dest, handle.read()))
    # What earlier runs with a proxy and a signing key left.
    host.run("echo 'Acquire::http::Proxy::127.0.0.1 \"http://127.0.0.1:3128\";' > /etc/apt/apt.conf.d/80slm-nvidia-cuda-proxy")
    host.run('mkdir -p /etc/dkms/framework.conf.d && echo mok_signing_key=/root/old.key '
             '> /etc/dkms/framework.conf.d/slm-fastchat-signing.conf')
    switched_off = {'nvidia_driver_version': NEWER, 'nvidia_driver_blacklist_nouveau': False}
    returncode, output = run_playbook(ROLES, switched_off, tmp_path)
    assert returncode == 0, output[-3000:]
    assert 'REBOOT NEEDED: slm-nvidia must reboot' in output and 'a new driver was installed' in output
    for package in DRIVER_PACKAGES + ['libcuda1']:
        assert version(host, package) == NEWER, package
    assert set(DRIVER_PACKAGES) <= set(held(host))
    with open(os.path.join(FAKE, 'cuda', 'repos', 'debian13', 'x86_64', '8793F200.pub')) as handle:
        assert host.file('/etc/apt/keyrings/nvidia-cuda.asc').content_string == handle.read()
    for path in ('/etc/apt/apt.conf.d/80slm-nvidia-cuda-proxy', '/etc/dkms/framework.conf.d/slm-fastchat-signing.conf',
                 '/etc/modprobe.d/slm-fastchat-blacklist-nouveau.conf'):
        assert not host.file(path).exists, path
    # The driver is in place now: a rerun neither changes nor asks for a reboot.
    returncode, output = run_playbook(ROLES, switched_off, tmp_path)
    assert returncode == 0 and 'changed=0' in output, output[-3000:]
    assert 'REBOOT NEEDED' not in output
    assert 'NVIDIA driver 590.48.01, 8 GPU(s) (NVIDIA H100 80GB HBM3), NVSwitch: True' in output
    assert 'persistence mode: on (nvidia-smi)' in output
    # Rolling back is a pin change too: the inventory's older pin takes the host back.
    returncode, output = run_playbook(ROLES, {}, tmp_path)
    assert returncode == 0 and 'REBOOT NEEDED' in output, output[-3000:]
    for package in DRIVER_PACKAGES + ['libcuda1']:
        assert version(host, package) == PINNED, package
    assert host.file('/etc/modprobe.d/slm-fastchat-blacklist-nouveau.conf').exists
