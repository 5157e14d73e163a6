# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capacity in users from a guidellm sweep: the pure part of the capacity report.

guidellm (the vLLM project's load tester) runs one benchmark per level of
concurrent users ("concurrent" profile) and writes them all to one JSON report.
:func:`levels` reads that report into one flat dict per level,
:func:`capacity` finds the largest number of users that meets the latency
target, :func:`render_markdown` writes the human report. No I/O, no
third-party imports: unit-tested without guidellm installed.

Units: seconds for latencies (guidellm's TTFT and ITL are milliseconds and are
converted), tokens per second and requests per second for throughput.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ReportError(ValueError):
    """The guidellm report does not have the shape this module reads."""


def _stat(metrics, name, status, statistic):
    """``metrics[name][status]``'s ``statistic`` ('mean', 'p95', 'p99'...) as float, None when absent/empty."""
    distribution = (metrics.get(name) or {}).get(status) or {}
    if not distribution.get('count'):
        return None
    if statistic.startswith('p'):
        value = (distribution.get('percentiles') or {}).get(statistic)
    else:
        value = distribution.get(statistic)
    return None if value is None else float(value)


def _scaled(value, factor):
    return None if value is None else value * factor


def levels(report):
    """One dict per benchmark of a guidellm JSON ``report`` (as loaded), ordered by users.

    Keys: ``users`` (int, the concurrent streams), ``requests`` (successful),
    ``errors``, ``incomplete`` (requests cut off at the end of the level),
    ``error_rate`` (errors / (successful + errors), 0 when none ran),
    ``ttft_p50``/``ttft_p95``/``ttft_p99`` and ``e2e_p50``/``e2e_p95``/``e2e_p99``
    (s, successful requests), ``itl_p50`` (s), ``output_tokens_mean`` (tokens
    per successful answer), ``output_tokens_per_s`` and ``requests_per_s``
    (means over the level, all requests), ``duration`` (s). Latencies are
    None when no request succeeded. Raises :class:`ReportError` on a report
    without benchmarks or with a benchmark that is not a concurrent one.
    """
    benchmarks = report.get('benchmarks') if isinstance(report, dict) else None
    if not benchmarks:
        raise ReportError('the guidellm report holds no benchmarks')
    rows = []
    for benchmark in benchmarks:
        strategy = (benchmark.get('config') or {}).get('strategy') or {}
        if strategy.get('type_') != 'concurrent' or not strategy.get('streams'):
            raise ReportError('benchmark %r is not a fixed-concurrency one (strategy %r); run guidellm with '
                              'profile kind=concurrent' % (benchmark.get('config', {}).get('id_'), strategy))
        metrics = benchmark.get('metrics') or {}
        totals = metrics.get('request_totals') or {}
        ok, errors = int(totals.get('successful', 0)), int(totals.get('errored', 0))
        rows.append({
            'users': int(strategy['streams']),
            'requests': ok,
            'errors': errors,
            'incomplete': int(totals.get('incomplete', 0)),
            'error_rate': errors / (ok + errors) if ok + errors else 0.0,
            'ttft_p50': _scaled(_stat(metrics, 'time_to_first_token_ms', 'successful', 'p50'), 0.001),
            'ttft_p95': _scaled(_stat(metrics, 'time_to_first_token_ms', 'successful', 'p95'), 0.001),
            'ttft_p99': _scaled(_stat(metrics, 'time_to_first_token_ms', 'successful', 'p99'), 0.001),
            'e2e_p50': _stat(metrics, 'request_latency', 'successful', 'p50'),
            'e2e_p95': _stat(metrics, 'request_latency', 'successful', 'p95'),
            'e2e_p99': _stat(metrics, 'request_latency', 'successful', 'p99'),
            'itl_p50': _scaled(_stat(metrics, 'inter_token_latency_ms', 'successful', 'p50'), 0.001),
            'output_tokens_mean': _stat(metrics, 'output_token_count', 'successful', 'mean'),
            'output_tokens_per_s': _stat(metrics, 'output_tokens_per_second', 'total', 'mean') or 0.0,
            'requests_per_s': _stat(metrics, 'requests_per_second', 'successful', 'mean') or 0.0,
            'duration': float(benchmark.get('duration') or 0.0),
        })
    return sorted(rows, key=lambda row: row['users'])


def verdict(level, ttft_p95_max, e2e_p99_max, max_error_rate=0.0):
    """Why ``level`` misses the target, as a list of short reasons; empty when it meets it."""
    reasons = []
    if not level['requests']:
        reasons.append('no request succeeded')
    if level['error_rate'] > max_error_rate:
        reasons.append('%d of %d requests failed' % (level['errors'], level['errors'] + level['requests']))
    if level['ttft_p95'] is not None and level['ttft_p95'] > ttft_p95_max:
        reasons.append('TTFT p95 %.2f s > %g s' % (level['ttft_p95'], ttft_p95_max))
    if level['e2e_p99'] is not None and level['e2e_p99'] > e2e_p99_max:
        reasons.append('e2e p99 %.2f s > %g s' % (level['e2e_p99'], e2e_p99_max))
    return reasons


def capacity(rows, ttft_p95_max, e2e_p99_max, max_error_rate=0.0):
    """The largest number of users that meets the target, from ``levels()`` rows.

    A level counts only when it and every smaller level measured meet the
    target: latency grows with load, so a pass above a failure is noise (a
    short level that got lucky), not capacity. Returns a dict: ``users`` (int,
    0 when even the smallest level misses), ``limit`` (the first level that
    misses, None when all pass: the sweep did not find the ceiling) and
    ``reasons`` (why it misses), and ``rows`` with ``meets`` (bool) and
    ``reasons`` added to each.
    """
    if ttft_p95_max <= 0 or e2e_p99_max <= 0:
        raise ValueError('latency targets must be positive, got TTFT p95 %r s and e2e p99 %r s'
                         % (ttft_p95_max, e2e_p99_max))
    marked = []
    users, limit, why = 0, None, []
    for row in sorted(rows, key=lambda item: item['users']):
        reasons = verdict(row, ttft_p95_max, e2e_p99_max, max_error_rate)
        marked.append(dict(row, meets=not reasons, reasons=reasons))
        if limit is None:
            if reasons:
                limit, why = row['users'], reasons
            else:
                users = row['users']
    return {'users': users, 'limit': limit, 'reasons': why, 'rows': marked}


def answer(result, ttft_p95_max, e2e_p99_max):
    """The one-line answer: 'holds N users at TTFT p95 <= X s, e2e p99 <= Y s' and what stops it."""
    line = 'holds %d users at TTFT p95 <= %g s, e2e p99 <= %g s' % (result['users'], ttft_p95_max, e2e_p99_max)
    if result['limit'] is None:
        return line + ' (every level measured met the target: sweep further to find the ceiling)'
    return line + ' (at %d users: %s)' % (result['limit'], '; '.join(result['reasons']))


def _cell(value, fmt):
    return '-' if value is None else fmt % value


def render_markdown(runs, target, setup):
    """The report in Markdown.

    ``runs`` is a list of ``{'label': str, 'result': capacity(...)}``, the
    first being the baseline the others are compared with (each gets a
    "N.Nx baseline" ratio of users held), e.g. earlier runs then this one. ``target`` is ``{'ttft_p95_max', 'e2e_p99_max',
    'max_error_rate'}``; ``setup`` a dict of what was measured (endpoint,
    model, tokens, tool...), printed as a list in its order.
    """
    lines = ['# Capacity report', '']
    lines += ['Target: TTFT p95 <= %g s and end-to-end p99 <= %g s, error rate <= %g %%.'
              % (target['ttft_p95_max'], target['e2e_p99_max'], 100 * target['max_error_rate']), '']
    lines += ['- %s: %s' % (key, value) for key, value in setup.items()]
    lines += ['', '## Users held', '', '| Run | Users held | First level that misses | Why |', '| --- | ---: | ---: | --- |']
    base = runs[0]['result']['users']
    for run in runs:
        result = run['result']
        held = '%d' % result['users']
        if run is not runs[0] and base:
            held += ' (%.1fx %s)' % (result['users'] / base, runs[0]['label'])
        lines.append('| %s | %s | %s | %s |' % (run['label'], held, _cell(result['limit'], '%d'),
                                                '; '.join(result['reasons']) or 'none missed'))
    for run in runs:
        lines += ['', '## %s: per level' % run['label'], '',
                  '| Users | Requests ok / failed | TTFT p50 | TTFT p95 | e2e p50 | e2e p99 | ITL p50 | '
                  'Answer tokens | Output tokens/s | Meets target |',
                  '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
        for row in run['result']['rows']:
            lines.append('| %d | %d / %d | %s | %s | %s | %s | %s | %s | %.1f | %s |' % (
                row['users'], row['requests'], row['errors'], _cell(row['ttft_p50'], '%.2f s'),
                _cell(row['ttft_p95'], '%.2f s'), _cell(row['e2e_p50'], '%.2f s'), _cell(row['e2e_p99'], '%.2f s'),
                _cell(row['itl_p50'], '%.3f s'), _cell(row['output_tokens_mean'], '%.1f'), row['output_tokens_per_s'],
                'yes' if row['meets'] else 'no: ' + '; '.join(row['reasons'])))
    lines += ['', 'Answer tokens: mean per successful answer (max_tokens caps it; a model may end its turn sooner). '
              'Percentiles come from few requests at each level: p99 is close to the slowest request.',
              '', 'Plots: latency.png (TTFT p95 and e2e p99 against users, target lines dashed), '
              'throughput.png (output tokens/s against users).', '']
    return '\n'.join(lines)
