#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: gpu_facts
short_description: Discover a host's NVIDIA GPUs and NVSwitches
version_added: 0.1.0
description:
  - Reads the PCI bus (sysfs, with names from C(lspci) when it is installed) and, when the driver is
    installed, C(nvidia-smi), and returns what it found as the fact C(slm_gpu).
  - Tells apart a host without NVIDIA devices, a driver that is not loaded, and a loaded kernel module whose
    version differs from the installed library (C(nvidia-smi) then fails with "Driver/library version
    mismatch" and the host needs a reboot).
  - Never changes anything.
author: slm.fastchat contributors (@slm-fastchat)
options:
  sysfs_pci_path:
    description: Where the PCI devices are listed.
    type: path
    default: /sys/bus/pci/devices
extends_documentation_fragment:
  - slm.fastchat.attributes
  - slm.fastchat.attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
'''

EXAMPLES = r'''
- name: Discover GPUs
  slm.fastchat.gpu_facts:

- name: Use them
  ansible.builtin.debug:
    msg: "{{ slm_gpu.gpu_count }} x {{ slm_gpu.models | join(', ') }}, NVSwitch: {{ slm_gpu.nvswitch }}"
'''

RETURN = r'''
ansible_facts:
  description: Facts to add to the host.
  returned: always
  type: dict
  contains:
    slm_gpu:
      description: What the host has.
      type: dict
      contains:
        gpu_count:
          description: GPUs nvidia-smi lists when the driver works, else NVIDIA GPUs on the PCI bus.
          type: int
        pci_gpu_count:
          description: NVIDIA VGA and 3D controllers on the PCI bus.
          type: int
        models:
          description: GPU model names.
          type: list
          elements: str
        nvswitch:
          description: Whether NVSwitch bridges are present (Fabric Manager needed).
          type: bool
        nvswitch_count:
          description: NVSwitch bridges on the PCI bus.
          type: int
        driver_state:
          description: C(ok), C(missing) (no nvidia-smi), C(no_driver), C(mismatch) or C(error).
          type: str
        driver_version:
          description: Driver version nvidia-smi reports, or null.
          type: str
        driver_message:
          description: What nvidia-smi printed when C(driver_state) is not C(ok) (its first 500 characters), or why
            it did not run; empty when the driver answers.
          type: str
        reboot_required:
          description: The loaded kernel module differs from the installed driver.
          type: bool
        gpus:
          description: One entry per GPU from nvidia-smi (index, name, uuid, pci_bus_id, memory_mib).
          type: list
          elements: dict
        pci_gpus:
          description: One entry per NVIDIA GPU on the PCI bus (slot, class, device, name).
          type: list
          elements: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.slm.fastchat.plugins.module_utils._gpu import parse_lspci, parse_nvidia_smi, parse_sysfs, summarise

NVIDIA_SMI_QUERY = ['--query-gpu=index,name,uuid,pci.bus_id,memory.total,driver_version',
                    '--format=csv,noheader,nounits']


def read_sysfs(path):
    entries = {}
    if not os.path.isdir(path):
        return entries
    for slot in os.listdir(path):
        values = {}
        for key in ('vendor', 'device', 'class'):
            try:
                with open(os.path.join(path, slot, key)) as handle:
                    values[key] = handle.read().strip()
            except (IOError, OSError):
                values[key] = ''
        entries[slot] = values
    return entries


def main():
    module = AnsibleModule(
        argument_spec=dict(sysfs_pci_path=dict(type='path', default='/sys/bus/pci/devices')),
        supports_check_mode=True,
    )
    devices = parse_sysfs(read_sysfs(module.params['sysfs_pci_path']))
    lspci = module.get_bin_path('lspci')
    if lspci and devices:
        rc, out, _err = module.run_command([lspci, '-nn', '-D'])
        if rc == 0:
            names = dict((device['slot'], device['name']) for device in parse_lspci(out))
            for device in devices:
                device['name'] = names.get(device['slot'])
    smi = module.get_bin_path('nvidia-smi')
    if smi:
        rc, out, err = module.run_command([smi] + NVIDIA_SMI_QUERY)
        state, gpus, driver, message = parse_nvidia_smi(rc, out, err)
    else:
        state, gpus, driver, message = 'missing', [], None, 'nvidia-smi is not installed'
    module.exit_json(changed=False, ansible_facts={'slm_gpu': summarise(devices, state, gpus, driver, message)})


if __name__ == '__main__':
    main()
