# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/capacity.yml refuses bad input before it sends a request or writes a report, naming the variable.

Runs the real playbook against inventories/demo's variables (the demo's fleet-wide values, the endpoint
https://127.0.0.1:8443/v1, which nothing here calls) with the head host mapped to this machine.
"""

import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def capacity(tmp_path, check=False, **extra):
    tokenizer = tmp_path / 'tokenizer'
    tokenizer.mkdir(exist_ok=True)
    (tokenizer / 'tokenizer_config.json').write_text('{}')
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True, exist_ok=True)
    (venv / 'bin' / 'guidellm').write_text('')
    ca = tmp_path / 'ca.crt'
    ca.write_text('')
    values = {'capacity_tokenizer': str(tokenizer), 'capacity_venv': str(venv), 'capacity_ca_path': str(ca),
              'capacity_api_key': 'sk-capacity-test', 'capacity_model': 'm',
              'capacity_report_dir': str(tmp_path / 'reports')}
    values.update(extra)
    values.update(ansible_connection='local', ansible_python_interpreter='python3', ansible_become=False)
    vars_file = tmp_path / 'extra.json'
    vars_file.write_text(json.dumps(values))
    result = subprocess.run(
        ['ansible-playbook', '-i', os.path.join(REPO, 'inventories', 'demo'),
         os.path.join(REPO, 'playbooks', 'capacity.yml'), '-e', '@%s' % vars_file] + (['--check'] if check else []),
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO, env=dict(os.environ, ANSIBLE_NOCOLOR='1'))
    return result.returncode, ' '.join((result.stdout + result.stderr).split())


def test_check_mode_says_what_it_would_send_and_sends_nothing(tmp_path):
    returncode, output = capacity(tmp_path, check=True, capacity_users='1,2,4')
    assert returncode == 0, output[-3000:]
    # (8 + 1 warm-up + 1) + (8 + 1 + 2) + (16 + 1 + 4) requests.
    assert 'would send 42 streamed requests to https://127.0.0.1:8443/v1 (m) at 1, 2, 4 concurrent users' in output
    assert not (tmp_path / 'reports').exists()


# Each run gives several bad values at once: the one message must name every one of them.
@pytest.mark.parametrize('extra, messages', [
    ({'capacity_url': 'https://llm.example.com/api', 'capacity_users': [4, 2], 'capacity_ttft_p95_max': 0,
      'capacity_max_error_rate': 1.5, 'capacity_prompt_tokens': 0, 'capacity_requests_per_user': 500,
      'capacity_timeout': 10, 'capacity_model': '', 'capacity_tokenizer': ''},
     ["capacity_url must be the API's base URL ending in /v1",
      'capacity_users must list distinct user counts from 1 to 1024 in ascending order',
      'capacity_ttft_p95_max must be from 0.01 to 600 seconds', 'capacity_max_error_rate must be a share from 0 to 1',
      'capacity_prompt_tokens must be from 1 to 32768', 'capacity_requests_per_user must be from 1 to 100',
      'capacity_timeout must be from 60 to 86400', 'capacity_model must name a served model',
      "capacity_tokenizer must be a local directory with the model's tokenizer files"]),
    ({'capacity_users': [0, 1], 'capacity_ttft_p95_max': 5, 'capacity_e2e_p99_max': 2},
     ['capacity_users must list distinct user counts', 'capacity_e2e_p99_max (2 s) cannot be below']),
    ({'capacity_tokenizer': '/nonexistent', 'capacity_venv': '/nonexistent', 'capacity_ca_path': '/nonexistent/ca.crt'},
     ['capacity_tokenizer (/nonexistent) holds no tokenizer_config.json', 'capacity_venv (/nonexistent) has no guidellm',
      'capacity_ca_path (/nonexistent/ca.crt) does not exist']),
    ({'capacity_users': 'many'}, ['Validation of arguments failed']),
])
def test_bad_input_fails_before_anything_runs(tmp_path, extra, messages):
    returncode, output = capacity(tmp_path, **extra)
    assert returncode != 0
    for message in messages:
        assert message in output, output[-3000:]
    assert 'changed=0' in output
    assert not (tmp_path / 'reports').exists()
