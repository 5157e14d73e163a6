# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""async_progress shows a long job's progress instead of bare ASYNC POLL lines (issue 13, "Also").

The image build and the Hub downloads run in the background and are followed by this action; here a shell job
stands in for them, on this machine.
"""

import os
import subprocess

import pytest

from ansible_collections.slm.fastchat.plugins.action.async_progress import last_line, last_lines

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize('text, expected', [
    ('#7 [4/8] RUN pip install torch\n#7 12.3 Collecting torch\n', '#7 12.3 Collecting torch'),
    ('model.safetensors:  10%|#         | 10M/100M\rmodel.safetensors:  55%|#####     | 55M/100M\r',
     'model.safetensors:  55%|#####     | 55M/100M'),
    ('\x1b[32mgreen\x1b[0m\n\n', 'green'),
    ('', ''),
])
def test_last_line(text, expected):
    assert last_line(text) == expected


def test_last_lines_keeps_order():
    assert last_lines('a\nb\rc\n\nd\n', 3) == ['b', 'c', 'd']


def test_follows_and_reports_a_failure(tmp_path):
    result = subprocess.run(
        ['ansible-playbook', '-i', 'localhost,', os.path.join(HERE, 'progress', 'follow.yml'),
         '-e', 'log=%s' % (tmp_path / 'job.log'), '-e', 'ansible_python_interpreter=python3'],
        capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR='1'))
    output = result.stdout + result.stderr
    # Progress lines while it ran, with the host, the label and the elapsed time.
    assert 'localhost | the slow job [' in output, output[-3000:]
    assert 'RUN step' in output or 'pip ' in output, output[-3000:]
    assert 'ASYNC POLL' not in output
    assert 'result rc=0 progress=pip 100%' in output, output[-3000:]
    # The failure names the job and quotes its last output.
    assert result.returncode != 0
    assert 'the failing job failed (non-zero return code)' in output, output[-3000:]
    assert 'ERROR - it broke' in output
