#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rolling update wall time over 1, 2 and 3 worker hosts, side by side, with the requests failed under load.

Runs as the verify step of the Molecule `fleet-bench` scenario (a head and
three worker hosts, the `fleet` scenario's settings): `make benchmark-fleet`.
Each rollout changes a worker setting (``serve_worker_concurrency``) on the
first N worker hosts with ``playbooks/rolling_update.yml --limit``, while the
fleet scenario's load client (4 users, streamed chat completions through the
head's HTTPS endpoint, no retries) records every request. The image is built
once and delivered at converge, so a rollout's time is drain, replace and
re-register per host plus the fixed preflight and head play.

The time a killed worker takes to leave rotation is what the fleet
scenario's kill -9 test prints.
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


def fleet_hosts():
    """(head, [worker hosts]) from Molecule's inventory."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.environ['MOLECULE_INVENTORY_FILE']) as handle:
        inventory = yaml.safe_load(handle)
    return list(inventory['fastchat_head']['hosts'])[0], sorted(inventory['fastchat_workers']['hosts'])


def rollout(client, head, members, hosts, concurrency):
    limit = ','.join([head] + hosts)
    # With --limit the hosts left out have no facts: name every member's address.
    addresses = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'fleet-addresses.json')
    with open(addresses, 'w') as handle:
        json.dump({'all': {'hosts': {host: {'fastchat_private_address': fleet.address(host)} for host in members}}},
                  handle)
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
    head, workers = fleet_hosts()
    port = subprocess.run(['docker', 'port', head, '443/tcp'], capture_output=True, text=True,
                          check=True).stdout.split()[0].rsplit(':', 1)[1]
    client = openai.OpenAI(base_url='https://127.0.0.1:%s/v1' % port, api_key=fleet.KEY, max_retries=0,
                           http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=fleet.CA)))
    lines = ['| worker hosts updated | rolling_update.yml wall time | requests during it | failed |',
             '| --- | --- | --- | --- |']
    times = []
    # Each rollout sets a value the hosts it covers do not have yet (default 5).
    for count, concurrency in zip(range(1, len(workers) + 1), (3, 2, 4, 3)):
        took, total, failed = rollout(client, head, [head] + workers, workers[:count], concurrency)
        times.append(took)
        lines.append('| %d | %.0f s | %d | %d |' % (count, took, total, failed))
        print(lines[-1], flush=True)
    lines.append('')
    lines += ['ratio %d hosts / 1 host: %.2f' % (count + 1, took / times[0]) for count, took in enumerate(times)][1:]
    print('\n'.join(lines))
    return lines
