#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet figures on the Molecule `fleet` scenario's hosts (run `molecule converge -s fleet` first).

Prints, side by side:
- rolling update wall time over 1 and 2 worker hosts (``--limit``), a worker
  setting changed each time, with the requests failed under load during it.
The time a killed worker takes to leave rotation under load is what the
scenario's kill -9 test prints (the last failed request after the kill).

Usage: MOLECULE_EPHEMERAL_DIRECTORY=... MOLECULE_INVENTORY_FILE=... python benchmarks/fleet.py
(`molecule` prints both; benchmarks/fleet.sh sets them).
"""

import json
import os
import ssl
import subprocess
import sys
import time

import openai

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'molecule', 'fleet', 'tests'))
os.environ.setdefault('MOLECULE_PROJECT_DIRECTORY', REPO)
import test_fleet as fleet  # noqa: E402  pylint: disable=wrong-import-position
from load import Load, failures  # noqa: E402  pylint: disable=wrong-import-position


def rollout(client, hosts, concurrency):
    limit = ','.join([fleet.HEAD] + hosts)
    # With --limit the hosts left out have no facts: name every member's address.
    addresses = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'fleet-addresses.json')
    with open(addresses, 'w') as handle:
        json.dump({'all': {'hosts': {host: {'fastchat_private_address': fleet.address(host)}
                                     for host in (fleet.HEAD, fleet.W1, fleet.W2)}}}, handle)
    load = Load(client, fleet.MODEL).start()
    time.sleep(3)
    started = time.monotonic()
    result = subprocess.run(['ansible-playbook', '-i', os.path.dirname(os.environ['MOLECULE_INVENTORY_FILE']),
                             '-i', addresses, os.path.join(REPO, 'playbooks', 'rolling_update.yml'), '--limit', limit,
                             '-e', 'serve_worker_concurrency=%d' % concurrency],
                            capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    outcomes = load.stop()
    assert result.returncode == 0, result.stdout[-3000:]
    return took, len(outcomes), len(failures(outcomes))


def main():
    port = subprocess.run(['docker', 'port', fleet.HEAD, '443/tcp'], capture_output=True, text=True,
                          check=True).stdout.split()[0].rsplit(':', 1)[1]
    client = openai.OpenAI(base_url='https://127.0.0.1:%s/v1' % port, api_key=fleet.KEY, max_retries=0,
                           http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=fleet.CA)))
    print('| worker hosts | rolling update (s) | requests | failed |')
    print('| --- | --- | --- | --- |')
    rows = []
    for count, concurrency in ((1, 3), (2, 2)):
        took, total, failed = rollout(client, [fleet.W1, fleet.W2][:count], concurrency)
        rows.append(took)
        print('| %d | %.0f | %d | %d |' % (count, took, total, failed))
    print('ratio 2 hosts / 1 host: %.2f' % (rows[1] / rows[0]))


if __name__ == '__main__':
    main()
