# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/gpu_hosts.yml --tags docker keeps the nvidia runtime in daemon.json (issue 13, item 4).

The docker role merges the container toolkit's share of daemon.json; that share used to be computed only in a
task tagged nvidia_container_toolkit, so --tags docker rendered daemon.json without the runtime and restarted
Docker on every GPU host. Runs the real playbook with connection local against a fake PCI bus holding an
NVIDIA GPU, and a docker_daemon_log_max_file the docker role's preflight refuses, so nothing past the
preflights can run on this machine.
"""

import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_tags_docker_keeps_the_nvidia_runtime(tmp_path):
    gpu = tmp_path / 'pci' / '0000:00:1e.0'
    gpu.mkdir(parents=True)
    for name, value in (('vendor', '0x10de'), ('device', '0x2237'), ('class', '0x030200')):
        (gpu / name).write_text(value + '\n')
    extra = tmp_path / 'extra.json'
    extra.write_text(json.dumps({
        'nvidia_container_toolkit_pci_devices_path': str(tmp_path / 'pci'),
        'docker_daemon_log_max_file': 0,
        'ansible_connection': 'local', 'ansible_python_interpreter': 'python3', 'ansible_become': False}))
    result = subprocess.run(
        ['ansible-playbook', '-v', '-i', os.path.join(REPO, 'inventories', 'prod'),
         os.path.join(REPO, 'playbooks', 'gpu_hosts.yml'), '--tags', 'docker', '-e', '@%s' % extra],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO, env=dict(os.environ, ANSIBLE_NOCOLOR='1'))
    output = ' '.join((result.stdout + result.stderr).split())
    # Stopped by the docker role's preflight, as intended, with the runtime handed over before it.
    assert 'docker_daemon_log_max_file' in output, output[-3000:]
    assert 'docker_daemon_options_nvidia' in output and 'nvidia-container-runtime' in output, output[-3000:]
    assert 'changed=0' in output
