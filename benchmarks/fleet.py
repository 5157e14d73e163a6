#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet figures on the Molecule `fleet` scenario's hosts (run `molecule converge -s fleet` first).

Prints, side by side:
- rolling update wall time over 1 and 2 worker hosts (``--limit``), a worker
  setting changed each time, with the requests failed under load during it;
- the time a killed worker takes to leave rotation without traffic (kill -9,
  restart disabled; the controller's "Remove stale worker" log line), and
  with traffic (the last failed request after the kill).

Usage: MOLECULE_EPHEMERAL_DIRECTORY=... MOLECULE_INVENTORY_FILE=... python benchmarks/fleet.py
(`molecule` prints both; benchmarks/fleet.sh sets them).
"""

import datetime
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
    load = Load(client, fleet.MODEL).start()
    time.sleep(3)
    started = time.monotonic()
    result = subprocess.run(['ansible-playbook', '-i', os.path.dirname(os.environ['MOLECULE_INVENTORY_FILE']),
                             os.path.join(REPO, 'playbooks', 'rolling_update.yml'), '--limit', limit,
                             '-e', 'serve_worker_concurrency=%d' % concurrency],
                            capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    outcomes = load.stop()
    assert result.returncode == 0, result.stdout[-3000:]
    return took, len(outcomes), len(failures(outcomes))


def leave_rotation_idle(host):
    container = fleet.worker_container(host)
    fleet.sh(host, 'docker update --restart=no %s' % container)
    killed = datetime.datetime.now(datetime.timezone.utc)
    fleet.sh(host, "kill -9 $(docker inspect -f '{{.State.Pid}}' %s)" % container)
    controller = fleet.sh(fleet.HEAD, "docker ps --format '{{.Names}}' | grep controller")
    address = 'http://%s:%d' % (fleet.address(host), fleet.WORKER_PORT)
    deadline = time.monotonic() + 60
    seconds = None
    while time.monotonic() < deadline and seconds is None:
        time.sleep(0.5)
        for line in fleet.sh(fleet.HEAD, 'docker logs -t --since %s %s 2>&1' % (
                killed.strftime('%Y-%m-%dT%H:%M:%S'), controller)).splitlines():
            if 'Remove stale worker' in line and address in line:
                stamp = datetime.datetime.fromisoformat(line.split()[0].replace('Z', '+00:00')[:26] + '+00:00')
                seconds = (stamp - killed).total_seconds()
                break
    fleet.sh(host, 'docker update --restart=unless-stopped %s && docker start %s' % (container, container))
    return seconds


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
    idle = leave_rotation_idle(fleet.W1)
    print('killed worker leaves rotation without traffic: %s s' % ('%.1f' % idle if idle is not None else '> 60'))


if __name__ == '__main__':
    main()
