# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU discovery from lspci and nvidia-smi output.

The fixtures are written in the exact formats of `lspci -nn -D` and of the
nvidia-smi CSV query the gpu_facts module runs, for the seed's g5.12xlarge
(4 x A10G), an HGX H100 board (8 x H100 SXM, 4 NVSwitches), a VM without
NVIDIA devices, and a host whose loaded driver differs from its library.
No GPU machine was available to capture them: check them against a real
host with `ansible-playbook playbooks/gpu_check.yml` once there is one.
"""

import os

import pytest

from ansible_collections.slm.fastchat.plugins.module_utils._gpu import (
    parse_lspci, parse_nvidia_smi, parse_sysfs, summarise)

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'gpu')


def fixture(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        return ''
    with open(path) as handle:
        return handle.read()


def facts(name, smi_returncode=0):
    smi = fixture(name + '.nvidia-smi')
    state, gpus, driver, _message = parse_nvidia_smi(smi_returncode, smi) if smi else ('missing', [], None, '')
    return summarise(parse_lspci(fixture(name + '.lspci')), state, gpus, driver)


def test_seed_host_four_a10g():
    result = facts('a10g-x4')
    assert result['gpu_count'] == result['pci_gpu_count'] == 4
    assert result['models'] == ['NVIDIA A10G']
    assert result['driver_state'] == 'ok' and result['driver_version'] == '580.95.05'
    assert not result['nvswitch'] and not result['reboot_required']
    assert [gpu['memory_mib'] for gpu in result['gpus']] == [23028] * 4


def test_hgx_h100_with_nvswitch():
    result = facts('h100-sxm-x8')
    assert result['gpu_count'] == 8
    assert result['nvswitch'] and result['nvswitch_count'] == 4
    assert result['models'] == ['NVIDIA H100 80GB HBM3']
    assert [gpu['index'] for gpu in result['gpus']] == list(range(8))


def test_host_without_nvidia_devices():
    result = facts('none')
    assert result['gpu_count'] == result['pci_gpu_count'] == 0
    assert result['driver_state'] == 'missing' and result['models'] == []


def test_driver_library_mismatch_asks_for_a_reboot():
    result = summarise(parse_lspci(fixture('a10g-x4.lspci')),
                       *parse_nvidia_smi(18, '', fixture('mismatch.nvidia-smi'))[:3])
    assert result['driver_state'] == 'mismatch' and result['reboot_required']
    # The bus still says how many GPUs there are.
    assert result['gpu_count'] == 4 and result['models'] == ['GA102GL [A10G]']


def test_before_the_driver_only_the_bus_counts():
    result = summarise(parse_lspci(fixture('h100-sxm-x8.lspci')), 'missing', [], None)
    assert result['gpu_count'] == 8 and result['nvswitch']
    assert result['models'] == ['GH100 [H100 SXM5 80GB]']


@pytest.mark.parametrize('returncode, output, state', [
    (9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", 'no_driver'),
    (6, 'No devices were found', 'no_driver'),
    (0, 'garbage', 'error'),
    (2, 'something else', 'error'),
])
def test_nvidia_smi_failures(returncode, output, state):
    assert parse_nvidia_smi(returncode, output)[0] == state


def test_sysfs_readings_without_lspci():
    entries = {
        '0000:00:1b.0': {'vendor': '0x10de', 'device': '0x2237', 'class': '0x030200'},
        '0000:05:00.0': {'vendor': '0x10de', 'device': '0x22a3', 'class': '0x068000'},
        '0000:00:03.0': {'vendor': '0x1d0f', 'device': '0x1111', 'class': '0x030000'},
    }
    result = summarise(parse_sysfs(entries), 'missing', [], None)
    assert result['pci_gpu_count'] == 1 and result['nvswitch']


def test_a_real_h200_vm_reads_as_one_gpu():
    """Recorded on a real host (a VM with one H200 passed through, driver
    580.159.04, 2026-11-29): nvidia-smi's line, and its sysfs entry, which is
    all that VM has (no lspci)."""
    state, gpus, driver, message = parse_nvidia_smi(0, fixture('h200-vm.nvidia-smi'))
    assert (state, driver, message) == ('ok', '580.159.04', '')
    assert gpus == [{'index': 0, 'name': 'NVIDIA H200', 'uuid': 'GPU-814ea081-2e93-c9ef-f1ab-3864a3c19bd8',
                     'pci_bus_id': '00000000:00:06.0', 'memory_mib': 143771}]
    entries = {'0000:00:06.0': {'vendor': '0x10de', 'device': '0x2335', 'class': '0x030200'},
               '0000:00:01.0': {'vendor': '0x1af4', 'device': '0x1042', 'class': '0x018000'}}
    result = summarise(parse_sysfs(entries), state, gpus, driver)
    assert result['gpu_count'] == result['pci_gpu_count'] == 1
    assert result['models'] == ['NVIDIA H200'] and not result['nvswitch'] and not result['reboot_required']


def test_a_failing_nvidia_smi_keeps_its_words():
    """Issue 13: the facts said driver_state 'mismatch' or 'error' but dropped what nvidia-smi printed."""
    result = summarise(parse_lspci(fixture('a10g-x4.lspci')), *parse_nvidia_smi(18, '', fixture('mismatch.nvidia-smi')))
    assert 'Failed to initialize NVML: Driver/library version mismatch' in result['driver_message']
    result = summarise([], *parse_nvidia_smi(9, '', 'NVIDIA-SMI has failed because of a GPU fault'))
    assert result['driver_state'] == 'error'
    assert result['driver_message'] == 'NVIDIA-SMI has failed because of a GPU fault'
