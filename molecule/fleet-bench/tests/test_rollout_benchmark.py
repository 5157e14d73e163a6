# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet rollout benchmark (benchmarks/fleet.py) as this scenario's verify step; it prints the table."""

import os
import sys

sys.path.insert(0, os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], 'benchmarks'))
import fleet as benchmark  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['slm-fbench-head']


def test_rolling_updates_over_1_2_and_3_worker_hosts_fail_no_request():
    """Not a timing assertion: the figures are printed; a rollout must succeed and fail no request."""
    lines = benchmark.main()
    report = os.path.join(os.environ['MOLECULE_PROJECT_DIRECTORY'], '.cache', 'fleet-rollout.md')
    with open(report, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')
    failed = [int(line.rsplit('|', 2)[1]) for line in lines if line.startswith('| ') and line[2].isdigit()]
    assert failed and set(failed) == {0}, lines
