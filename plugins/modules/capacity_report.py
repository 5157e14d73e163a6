#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: capacity_report
short_description: Turn a guidellm load sweep into capacity in users, with a report and plots
version_added: 0.2.0
description:
  - Reads the JSON report of a guidellm sweep at fixed concurrency levels (profile C(concurrent)), finds the
    largest number of concurrent users whose time to first token p95 and end-to-end latency p99 meet the target
    with no more failed requests than allowed, and writes C(capacity.json), C(capacity.md), C(latency.png) and
    C(throughput.png) into O(dest).
  - A level counts only when every smaller level measured meets the target too.
  - Earlier reports (O(compare)) are drawn on the same plots and tabled side by side, e.g. the HF and the vLLM
    worker on the same host.
  - Runs where the report is written (the control node), with a Python that has matplotlib (the capacity role
    runs it with the load tester's virtualenv).
author: slm.fastchat contributors (@slm-fastchat)
requirements:
  - matplotlib (for the plots)
options:
  results:
    description: guidellm's JSON report of the sweep (its C(json) output).
    type: path
    required: true
  label:
    description: Name of this run in tables and legends, e.g. the backend.
    type: str
    required: true
  dest:
    description: Directory to write the report into; created when missing.
    type: path
    required: true
  ttft_p95_max:
    description: Target for the 95th percentile of time to first token, in seconds.
    type: float
    required: true
  e2e_p99_max:
    description: Target for the 99th percentile of end-to-end request latency, in seconds.
    type: float
    required: true
  max_error_rate:
    description: Largest share of failed requests (0 to 1) a level may have and still meet the target.
    type: float
    default: 0.0
  setup:
    description: What was measured (endpoint, model, token counts...), listed at the top of the report.
    type: dict
    default: {}
  compare:
    description: >-
      C(capacity.json) files of earlier reports to show next to this run, oldest first; the first is the baseline
      the users-held ratios refer to.
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - slm.fastchat.attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Report capacity in users
  slm.fastchat.capacity_report:
    results: /tmp/sweep/guidellm.json
    label: hf
    dest: /tmp/sweep
    ttft_p95_max: 2
    e2e_p99_max: 10
  delegate_to: localhost
'''

RETURN = r'''
users:
  description: Largest number of concurrent users that meets the target; 0 when even the smallest level misses.
  returned: success
  type: int
  sample: 4
limit:
  description: The first level that misses the target; null when every level met it.
  returned: success
  type: int
  sample: 8
answer:
  description: The answer in one line, with what stops the next level.
  returned: success
  type: str
  sample: "holds 4 users at TTFT p95 <= 2 s, e2e p99 <= 10 s (at 8 users: TTFT p95 5.10 s > 2 s)"
levels:
  description: One dict per level measured (users, requests, errors, latencies in seconds, throughput, meets).
  returned: success
  type: list
  elements: dict
files:
  description: Paths of the files written.
  returned: success
  type: list
  elements: str
'''

import json
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.slm.fastchat.plugins.module_utils._capacity import (
    ReportError, answer, capacity, levels, render_markdown)

try:
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    HAS_MATPLOTLIB = True
    MATPLOTLIB_ERROR = None
except ImportError:
    HAS_MATPLOTLIB = False
    MATPLOTLIB_ERROR = traceback.format_exc()


def _plot(runs, target, path, series, ylabel, title):
    """One PNG: for each run, each (key, name, style) series of its rows against users."""
    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=110)
    for number, run in enumerate(runs):
        colour = 'C%d' % number
        for key, name, style in series:
            points = [(row['users'], row[key]) for row in run['result']['rows'] if row[key] is not None]
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], style, color=colour,
                          label='%s %s' % (run['label'], name))
        if run['result']['users']:
            axes.axvline(run['result']['users'], color=colour, alpha=0.25, linewidth=6,
                         label='%s holds %d' % (run['label'], run['result']['users']))
    for key, value in target:
        axes.axhline(value, color='grey', linestyle=':', linewidth=1)
        axes.annotate(key, (axes.get_xlim()[0], value), textcoords='offset points', xytext=(4, 3), fontsize=8,
                      color='grey')
    measured = sorted({row['users'] for run in runs for row in run['result']['rows']})
    axes.set_xticks(measured)
    axes.set_ylim(bottom=0)
    axes.set_xlabel('concurrent users')
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            results=dict(type='path', required=True),
            label=dict(type='str', required=True),
            dest=dict(type='path', required=True),
            ttft_p95_max=dict(type='float', required=True),
            e2e_p99_max=dict(type='float', required=True),
            max_error_rate=dict(type='float', default=0.0),
            setup=dict(type='dict', default={}),
            compare=dict(type='list', elements='path', default=[]),
        ),
        supports_check_mode=False,
    )
    if not HAS_MATPLOTLIB:
        module.fail_json(msg=missing_required_lib('matplotlib'), exception=MATPLOTLIB_ERROR)
    params = module.params
    target = {key: params[key] for key in ('ttft_p95_max', 'e2e_p99_max', 'max_error_rate')}
    try:
        with open(params['results']) as handle:
            rows = levels(json.load(handle))
        result = capacity(rows, params['ttft_p95_max'], params['e2e_p99_max'], params['max_error_rate'])
    except (OSError, ValueError) as error:
        kind = 'not a guidellm sweep' if isinstance(error, ReportError) else 'cannot be read'
        module.fail_json(msg='%s %s: %s' % (params['results'], kind, error))
    # Earlier runs first: the first one is the baseline the table's ratios refer to.
    runs = []
    for path in params['compare']:
        try:
            with open(path) as handle:
                earlier = json.load(handle)
            # An earlier run is judged by this run's target, so the two compare.
            runs.append({'label': earlier['label'], 'result': capacity(
                earlier['result']['rows'], params['ttft_p95_max'], params['e2e_p99_max'], params['max_error_rate'])})
        except (OSError, ValueError, KeyError, TypeError) as error:
            module.fail_json(msg='%s is not a capacity.json of an earlier report: %s' % (path, error))
    runs.append({'label': params['label'], 'result': result})

    dest = params['dest']
    if not os.path.isdir(dest):
        os.makedirs(dest)
    line = answer(result, params['ttft_p95_max'], params['e2e_p99_max'])
    files = [os.path.join(dest, name) for name in ('capacity.json', 'capacity.md', 'latency.png', 'throughput.png')]
    with open(files[0], 'w') as handle:
        json.dump({'label': params['label'], 'answer': line, 'target': target, 'setup': params['setup'],
                   'result': result, 'compare': [{'label': run['label'], 'users': run['result']['users']}
                                                 for run in runs[:-1]]}, handle, indent=2, sort_keys=True)
    with open(files[1], 'w') as handle:
        handle.write(render_markdown(runs, target, params['setup']))
    title = 'target: TTFT p95 <= %g s, e2e p99 <= %g s' % (params['ttft_p95_max'], params['e2e_p99_max'])
    _plot(runs, [('TTFT p95 target', params['ttft_p95_max']), ('e2e p99 target', params['e2e_p99_max'])],
          files[2], [('ttft_p95', 'TTFT p95', 'o-'), ('e2e_p99', 'e2e p99', 's--')], 'seconds',
          'Latency vs users (' + title + ')')
    _plot(runs, [], files[3], [('output_tokens_per_s', 'output tokens/s', 'o-')], 'output tokens per second',
          'Throughput vs users')
    module.exit_json(changed=True, users=result['users'], limit=result['limit'], answer=line,
                     levels=result['rows'], files=files)


if __name__ == '__main__':
    main()
