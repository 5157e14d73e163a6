# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse what a host says about its NVIDIA devices (internal to slm.fastchat).

Pure functions over command output and sysfs readings, so they are tested
with recorded outputs; the gpu_facts module gathers the inputs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

NVIDIA_VENDOR = '10de'
# PCI classes: 0300 VGA controller, 0302 3D controller (data-centre GPUs), 0680 other bridge (NVSwitch).
GPU_CLASSES = ('0300', '0302')
BRIDGE_CLASS = '0680'
# NVSwitch device IDs (third-generation for A100 systems, fourth for H100/H200 systems).
NVSWITCH_DEVICE_IDS = frozenset(('1af1', '22a3'))

LSPCI_RE = re.compile(
    r'^(?P<slot>\S+)\s+(?P<class_name>.+?)\s+\[(?P<class>[0-9a-f]{4})\]:\s+(?P<name>.+?)\s+'
    r'\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]', re.IGNORECASE)


def parse_lspci(text):
    """Parse `lspci -nn -D` into NVIDIA devices: dicts with slot, class, device and name."""
    devices = []
    for line in text.splitlines():
        match = LSPCI_RE.match(line.strip())
        if not match or match.group('vendor').lower() != NVIDIA_VENDOR:
            continue
        name = re.sub(r'^NVIDIA Corporation\s+', '', match.group('name'))
        devices.append({'slot': match.group('slot'), 'class': match.group('class').lower(),
                        'device': match.group('device').lower(), 'name': name})
    return devices


def parse_sysfs(entries):
    """Turn sysfs readings ({slot: {vendor, device, class}} with 0x-prefixed values) into NVIDIA devices."""
    devices = []
    for slot, values in sorted(entries.items()):
        vendor = values.get('vendor', '').lower().replace('0x', '')
        if vendor != NVIDIA_VENDOR:
            continue
        devices.append({'slot': slot, 'class': values.get('class', '').lower().replace('0x', '')[:4],
                        'device': values.get('device', '').lower().replace('0x', ''), 'name': None})
    return devices


def is_nvswitch(device):
    return device['class'] == BRIDGE_CLASS and (
        device['device'] in NVSWITCH_DEVICE_IDS or 'nvswitch' in (device.get('name') or '').lower())


def parse_nvidia_smi(returncode, stdout, stderr=''):
    """Parse `nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,memory.total,driver_version
    --format=csv,noheader,nounits`. Returns (state, gpus, driver_version, message).

    state: ok, mismatch (the loaded kernel module differs from the installed
    library: a reboot is due), no_driver, or error.
    """
    text = '%s\n%s' % (stdout, stderr)
    if 'Driver/library version mismatch' in text:
        return 'mismatch', [], None, text.strip()
    if returncode != 0:
        if "couldn't communicate with the NVIDIA driver" in text or 'No devices were found' in text:
            return 'no_driver', [], None, text.strip()
        return 'error', [], None, text.strip()
    gpus = []
    drivers = set()
    for line in stdout.splitlines():
        fields = [field.strip() for field in line.split(',')]
        if len(fields) != 6 or not fields[0].isdigit():
            continue
        index, name, uuid, bus_id, memory, driver = fields
        gpus.append({'index': int(index), 'name': name, 'uuid': uuid, 'pci_bus_id': bus_id,
                     'memory_mib': int(memory) if memory.isdigit() else None})
        drivers.add(driver)
    if not gpus:
        return 'error', [], None, 'nvidia-smi listed no GPUs: %s' % text.strip()[:300]
    return 'ok', gpus, ', '.join(sorted(drivers)), ''


def summarise(pci_devices, smi_state, smi_gpus, driver_version, smi_message=''):
    """The facts a play needs: what is on the bus, what the driver sees, and what nvidia-smi said when it failed."""
    pci_gpus = [device for device in pci_devices if device['class'] in GPU_CLASSES]
    return {
        'pci_gpu_count': len(pci_gpus),
        'pci_gpus': pci_gpus,
        'nvswitch_count': len([device for device in pci_devices if is_nvswitch(device)]),
        'nvswitch': any(is_nvswitch(device) for device in pci_devices),
        'driver_state': smi_state,
        'driver_version': driver_version,
        # nvidia-smi's own words when the state is not ok (first 500 characters), so a report can say why.
        'driver_message': (smi_message or '')[:500],
        'gpus': smi_gpus,
        'gpu_count': len(smi_gpus) if smi_state == 'ok' else len(pci_gpus),
        'models': sorted(set(gpu['name'] for gpu in smi_gpus) if smi_gpus
                         else set(device['name'] for device in pci_gpus if device['name'])),
        'reboot_required': smi_state == 'mismatch',
    }
