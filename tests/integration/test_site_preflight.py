# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml's preflight refuses bad inventories before anything changes, naming the variable.

Runs the real site.yml against inventories/prod with the host mapped to this machine
(connection local) and a tag no task carries, so only the always-run preflight executes:
even if a check were missing, no role could change this machine.
"""

import json
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REV = '0123456789abcdef0123456789abcdef01234567'
PINNED = [
    {'name': 'phi-4', 'repo': 'microsoft/phi-4', 'revision': REV, 'family': 'phi-4',
     'workers': 2, 'gpus_per_worker': 2, 'max_gpu_memory': '22GiB', 'backend': 'hf'},
]


def preflight(tmp_path, inventory='prod', host_vars=None, **extra):
    if host_vars:
        # Extra vars would beat the hosts' own model lists: give every host one instead.
        host_vars = {host: dict({'fastchat_models': PINNED}, **host_vars.get(host, {}))
                     for host in ('head-01', 'gpu-01', 'gpu-02')}
    else:
        extra.setdefault('fastchat_models', PINNED)
    extra.setdefault('vault_fastchat_api_keys', ['sk-preflight-test-key-0123'])
    # inventories/prod requires GPUs; this machine has none.
    extra.setdefault('nvidia_driver_required', False)
    # No private CA on this machine: preflight accepts one that is to be made.
    extra.setdefault('fastchat_ca_dir', str(tmp_path / 'ca'))
    extra.setdefault('fastchat_ca_create', True)
    extra.update(ansible_connection='local', ansible_python_interpreter='python3', ansible_become=False)
    vars_file = tmp_path / 'extra.json'
    vars_file.write_text(json.dumps(extra))
    inventories = ['-i', os.path.join(REPO, 'inventories', inventory)]
    if host_vars:
        # A second inventory source with per-host settings (merged into the first).
        overrides = tmp_path / 'overrides.json'
        overrides.write_text(json.dumps({'all': {'hosts': host_vars}}))
        inventories += ['-i', str(overrides)]
    result = subprocess.run(
        ['ansible-playbook'] + inventories + [os.path.join(REPO, 'site.yml'),
                                              '--tags', 'preflight-only', '-e', '@%s' % vars_file],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
        env=dict(os.environ, ANSIBLE_NOCOLOR='1'))
    return result.returncode, ' '.join((result.stdout + result.stderr).split())


def test_a_valid_inventory_passes(tmp_path):
    """inventories/prod as shipped (FastChat settings included) passes: it failed on an empty commit (issue 13)."""
    returncode, output = preflight(tmp_path)
    assert returncode == 0, output[-3000:]
    assert 'changed=0' in output


def test_fastchat_from_git_has_a_default_commit(tmp_path):
    returncode, output = preflight(tmp_path, image_fastchat_source='git')
    assert returncode == 0, output[-3000:]


def test_fleet_wide_values_set_once_pass(tmp_path):
    returncode, output = preflight(tmp_path, fastchat_runtime_uid=10002,
                                   fastchat_models_dir='/data/models')
    assert returncode == 0, output[-3000:]


def test_argument_validation_takes_seconds(tmp_path):
    """Issue 13: validating every role's arguments took 20-50 s (21.9 s here) as a loop; one task takes well under 1 s."""
    returncode, output = preflight(tmp_path)
    assert returncode == 0, output[-3000:]
    # ansible.posix.profile_tasks (ansible.cfg) times each task.
    seconds = re.search(r"Validate every role's variables against its argument spec -+ ([0-9.]+)s", output)
    assert seconds, output[-3000:]
    assert float(seconds.group(1)) < 5, seconds.group(0)


@pytest.mark.parametrize('extra, expected', [
    ({'fastchat_models': [dict(PINNED[0], revision='')]},
     'fastchat_models[0] (phi-4).revision is missing'),
    ({'fastchat_models': [dict(PINNED[0], workers=1, gpus_per_worker=1, device_ids=[[0]]),
                          dict(PINNED[0], name='phi-4-b', workers=1, gpus_per_worker=1, device_ids=[[0]])]},
     'both want GPU 0'),
    ({'fastchat_models': [dict(PINNED[0], family='phi-3')]},
     "fastchat_models[0] (phi-4).family 'phi-3' is not a supported model family"),
    ({'fastchat_gpu_count': 2}, 'needs 4 GPUs (phi-4: 2 x 2) but the host has 2'),
    ({'vault_fastchat_api_keys': []}, 'serve_api_keys (fastchat_api_keys) must list at least one key'),
    ({'serve_dispatch_method': 'round_robin'}, 'serve_dispatch_method must be one of: lottery, shortest_queue'),
    ({'tls_proxy_certificate_mode': 'provided', 'tls_proxy_certificate_file': '/nonexistent/cert.pem',
      'tls_proxy_key_file': '/nonexistent/key.pem'}, "tls_proxy_certificate_file ('/nonexistent/cert.pem')"),
    ({'tls_proxy_upstream_keepalive_timeout': 0}, 'tls_proxy_upstream_keepalive_timeout 1-3600 (got 0)'),
    ({'fastchat_device': 'tpu'}, "fastchat_device must be 'cuda' or 'cpu'"),
    ({'image_fastchat_source': 'git', 'image_fastchat_git_commit': 'main'},
     "image_fastchat_git_commit 'main' must be a 40-character commit"),
    ({'nvidia_driver_required': True}, 'nvidia_driver_required is true for gpu-01, but it has no NVIDIA GPU'),
    ({'nvidia_driver_branch': '58'}, "nvidia_driver_branch '58' is not a driver branch"),
    ({'nvidia_container_toolkit_cdi_spec': 'nvidia.yaml'}, 'nvidia_container_toolkit_cdi_spec must be an absolute path'),
    # Issue 13, item 5: a fleet-wide value overridden for one role only.
    ({'image_runtime_uid': 10002}, 'models_owner_uid (10001) differs from image_runtime_uid (10002)'),
    ({'image_runtime_uid': 10002, 'models_owner_uid': 10002},
     'serve_runtime_uid (10001) differs from image_runtime_uid (10002)'),
    ({'serve_models_dir': '/data/models'}, 'serve_models_dir (/data/models) differs from models_dir (/srv/fastchat/models)'),
    ({'models_dir': '/data/models'}, 'serve_models_dir (/srv/fastchat/models) differs from models_dir (/data/models)'),
    ({'smoke_test_ca_path': '/etc/ssl/certs/ca-certificates.crt'},
     'smoke_test_ca_path (/etc/ssl/certs/ca-certificates.crt) is not the CA that tls_proxy_ca_dir holds'),
    ({'smoke_test_api_key': 'sk-not-a-key-the-server-has-0123'}, 'smoke_test_api_key is not one of serve_api_keys'),
])
def test_bad_inventories_fail_in_preflight(tmp_path, extra, expected):
    returncode, output = preflight(tmp_path, **extra)
    assert returncode != 0, output[-3000:]
    assert expected in output, output[-3000:]
    assert 'changed=0' in output


def test_a_fleet_with_a_head_that_has_no_gpu_passes(tmp_path):
    """inventories/fleet: a head host with no GPU and no GPU count, two GPU worker hosts."""
    returncode, output = preflight(tmp_path, inventory='fleet')
    assert returncode == 0, output[-3000:]
    assert 'changed=0' in output
    # The head runs no NVIDIA role and discovers no GPU.
    assert not re.search(r'slm\.fastchat\.nvidia_driver : [^*]*\*+ ok: \[head-01\]', output)
    assert 'Discover GPUs' in output and 'ok: [head-01]' in output


@pytest.mark.parametrize('host_vars, expected', [
    # One worker host has fewer GPUs than its models need.
    ({'gpu-02': {'fastchat_gpu_count': 2}}, 'gpu-02: fastchat_models needs 4 GPUs (phi-4: 2 x 2) but the host has 2'),
    # The head lists a model that no worker host enables.
    ({'head-01': {'fastchat_models': [PINNED[0], dict(PINNED[0], name='phi-4-b')]}},
     'No enabled worker serves phi-4-b'),
    # Every worker host serves another model instead.
    ({'gpu-01': {'fastchat_models': [dict(PINNED[0], enabled=False), dict(PINNED[0], name='phi-4-b')]},
      'gpu-02': {'fastchat_models': [dict(PINNED[0], enabled=False), dict(PINNED[0], name='phi-4-b')]}},
     'No enabled worker serves phi-4:'),
    # Worker hosts register at a private address: a name cannot be published on.
    ({'gpu-01': {'fastchat_private_address': 'gpu-01.internal'}}, 'set fastchat_private_address for gpu-01'),
])
def test_bad_fleets_fail_in_preflight(tmp_path, host_vars, expected):
    returncode, output = preflight(tmp_path, inventory='fleet', host_vars=host_vars)
    assert returncode != 0, output[-3000:]
    assert expected in output, output[-3000:]
    assert 'changed=0' in output
