# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capacity in users from guidellm reports: reading levels, the largest passing level, the Markdown report.

Reports are built in guidellm 0.8's JSON shape (``benchmarks[].config.strategy``,
``metrics.<name>.<status>.percentiles``), trimmed to the fields the report reads;
the real tool's output is read by tests/unit/plugins/modules/test_capacity_report.py.
"""

import pytest

from ansible_collections.slm.fastchat.plugins.module_utils._capacity import (
    ReportError, answer, capacity, levels, render_markdown)


def dist(p50=None, p95=None, p99=None, mean=None, count=8):
    return {'count': count, 'mean': mean, 'percentiles': {'p50': p50, 'p95': p95, 'p99': p99}}


def benchmark(users, ttft_p95, e2e_p99, ok=8, errors=0, tokens_per_s=10.0):
    """One level: TTFT in ms as guidellm writes it, latency in s."""
    return {
        'config': {'strategy': {'type_': 'concurrent', 'streams': users}},
        'duration': 12.5,
        'metrics': {
            'request_totals': {'successful': ok, 'errored': errors, 'incomplete': 0, 'total': ok + errors},
            'time_to_first_token_ms': {'successful': dist(ttft_p95 * 500, ttft_p95 * 1000, ttft_p95 * 1100,
                                                          count=ok)},
            'request_latency': {'successful': dist(e2e_p99 / 2, e2e_p99 * 0.9, e2e_p99, count=ok)},
            'inter_token_latency_ms': {'successful': dist(120.0, count=ok)},
            'output_token_count': {'successful': dist(mean=31.5, count=ok)},
            'output_tokens_per_second': {'total': dist(mean=tokens_per_s)},
            'requests_per_second': {'successful': dist(mean=0.3)},
        }}


def sweep(*benchmarks):
    return {'benchmarks': list(benchmarks)}


def test_levels_are_read_in_seconds_and_ordered_by_users():
    rows = levels(sweep(benchmark(4, 1.5, 6.0, errors=2), benchmark(1, 0.4, 4.0)))
    assert [row['users'] for row in rows] == [1, 4]
    four = rows[1]
    assert four['ttft_p95'] == pytest.approx(1.5) and four['ttft_p50'] == pytest.approx(0.75)
    assert four['e2e_p99'] == pytest.approx(6.0)
    assert four['itl_p50'] == pytest.approx(0.12)
    assert (four['requests'], four['errors'], four['error_rate']) == (8, 2, pytest.approx(0.2))
    assert four['output_tokens_per_s'] == 10.0 and four['output_tokens_mean'] == 31.5


def test_a_level_where_every_request_failed_has_no_latencies():
    rows = levels(sweep(benchmark(2, 0, 0, ok=0, errors=8)))
    assert rows[0]['ttft_p95'] is None and rows[0]['e2e_p99'] is None and rows[0]['error_rate'] == 1.0


@pytest.mark.parametrize('report, message', [
    ({}, 'no benchmarks'),
    ({'benchmarks': []}, 'no benchmarks'),
    ([], 'no benchmarks'),
    (sweep({'config': {'strategy': {'type_': 'throughput'}}}), 'profile kind=concurrent'),
])
def test_reports_that_are_no_concurrency_sweep_are_refused(report, message):
    with pytest.raises(ReportError, match=message):
        levels(report)


# (users, TTFT p95 s, e2e p99 s, errors) per level; the users held at 2 s / 10 s; the first failing level.
@pytest.mark.parametrize('measured, held, limit', [
    ([(1, 0.5, 4), (2, 0.9, 5), (4, 1.9, 9.9), (8, 4.0, 20)], 4, 8),
    # Exactly at the target meets it.
    ([(1, 2.0, 10.0), (2, 2.01, 10.0)], 1, 2),
    # e2e alone can fail a level.
    ([(1, 0.5, 4), (2, 0.6, 10.5)], 1, 2),
    # A failed request fails the level, however fast the others were.
    ([(1, 0.5, 4, 0), (2, 0.5, 4, 1)], 1, 2),
    # Nothing passes: 0 users.
    ([(1, 3.0, 4)], 0, 1),
    # Everything passes: the ceiling lies beyond the sweep.
    ([(1, 0.1, 1), (16, 0.5, 2)], 16, None),
    # A lucky pass above a failure is not capacity.
    ([(1, 0.5, 4), (2, 2.5, 5), (4, 1.5, 6)], 1, 2),
])
def test_capacity_is_the_largest_level_below_the_first_miss(measured, held, limit):
    rows = levels(sweep(*[benchmark(level[0], level[1], level[2], errors=level[3] if len(level) > 3 else 0)
                          for level in measured]))
    result = capacity(rows, 2.0, 10.0)
    assert (result['users'], result['limit']) == (held, limit)
    assert [row['meets'] for row in result['rows']][:len([r for r in measured if r[0] <= held])] == \
        [True] * len([r for r in measured if r[0] <= held])


def test_an_error_budget_lets_a_level_with_few_failures_pass():
    rows = levels(sweep(benchmark(1, 0.5, 4), benchmark(2, 0.5, 4, ok=19, errors=1)))
    assert capacity(rows, 2, 10)['users'] == 1
    assert capacity(rows, 2, 10, max_error_rate=0.05)['users'] == 2


@pytest.mark.parametrize('ttft, e2e', [(0, 10), (2, -1)])
def test_targets_must_be_positive(ttft, e2e):
    with pytest.raises(ValueError, match='positive'):
        capacity([], ttft, e2e)


def test_the_answer_says_what_stops_the_next_level():
    rows = levels(sweep(benchmark(1, 0.5, 4), benchmark(2, 3.25, 12)))
    line = answer(capacity(rows, 2, 10), 2, 10)
    assert line == 'holds 1 users at TTFT p95 <= 2 s, e2e p99 <= 10 s (at 2 users: TTFT p95 3.25 s > 2 s; ' \
                   'e2e p99 12.00 s > 10 s)'
    everything = answer(capacity(rows, 5, 20), 5, 20)
    assert everything.startswith('holds 2 users') and 'sweep further' in everything


def test_markdown_tables_every_level_and_compares_runs():
    hf = capacity(levels(sweep(benchmark(1, 0.5, 4, tokens_per_s=8), benchmark(2, 2.5, 8, tokens_per_s=8.2))),
                  2, 10)
    vllm = capacity(levels(sweep(benchmark(1, 0.3, 3), benchmark(2, 0.4, 3.5), benchmark(4, 0.6, 4))), 2, 10)
    text = render_markdown([{'label': 'hf', 'result': hf}, {'label': 'vllm', 'result': vllm}],
                           {'ttft_p95_max': 2, 'e2e_p99_max': 10, 'max_error_rate': 0},
                           {'endpoint': 'https://127.0.0.1:8443/v1', 'model': 'smollm2'})
    assert 'Target: TTFT p95 <= 2 s and end-to-end p99 <= 10 s' in text
    assert '- endpoint: https://127.0.0.1:8443/v1' in text
    assert '| hf | 1 | 2 | TTFT p95 2.50 s > 2 s |' in text
    assert '| vllm | 4 (4.0x hf) | - | none missed |' in text
    assert '| 2 | 8 / 0 | 1.25 s | 2.50 s | 4.00 s | 8.00 s | 0.120 s | 31.5 | 8.2 | no: TTFT p95 2.50 s > 2 s |' in text
    assert text.count(': per level') == 2
