# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_facts run as a module, with a stand-in nvidia-smi that fails: its error text reaches the facts."""

import json
import os
import subprocess

import pytest


@pytest.mark.parametrize('stderr, state', [
    ('Unable to determine the device handle for GPU0000:00:1E.0: Unknown Error', 'error'),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", 'no_driver'),
])
def test_nvidia_smi_error_text_is_kept(tmp_path, stderr, state):
    (tmp_path / 'bin').mkdir()
    smi = tmp_path / 'bin' / 'nvidia-smi'
    smi.write_text('#!/bin/sh\necho "%s" >&2\nexit 9\n' % stderr)
    smi.chmod(0o755)
    gpu = tmp_path / 'pci' / '0000:00:1e.0'
    gpu.mkdir(parents=True)
    for name, value in (('vendor', '0x10de'), ('device', '0x2237'), ('class', '0x030200')):
        (gpu / name).write_text(value + '\n')
    result = subprocess.run(
        ['ansible', 'localhost', '-m', 'slm.fastchat.gpu_facts', '-a', 'sysfs_pci_path=%s' % (tmp_path / 'pci'),
         '-e', 'ansible_python_interpreter=python3', '-o'],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, PATH='%s:%s' % (tmp_path / 'bin', os.environ['PATH']), ANSIBLE_NOCOLOR='1',
                 ANSIBLE_LOAD_CALLBACK_PLUGINS='0'))
    assert result.returncode == 0, result.stdout + result.stderr
    facts = json.loads(result.stdout.split('=>', 1)[1])['ansible_facts']['slm_gpu']
    assert facts['driver_state'] == state
    assert facts['driver_message'] == stderr
