# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure an OpenAI-compatible endpoint: time to first token, latency percentiles, throughput.

Standard library only, so it runs on a deployed host as it is (the benchmark
runs it there, next to both the API server and nginx, for a fair comparison).
Prints one JSON object. Bounded: a fixed number of requests, each with a timeout.
The API key comes from OPENAI_API_KEY, never the command line.
Usage: python3 load.py URL MODEL [--ca FILE] [--requests N] [--concurrency C] [--max-tokens T]
"""

import argparse
import concurrent.futures
import json
import os
import ssl
import statistics
import time
import urllib.request


def stream_once(url, key, model, max_tokens, context):
    body = json.dumps({'model': model, 'stream': True, 'max_tokens': max_tokens, 'temperature': 0,
                       'messages': [{'role': 'user', 'content': 'Write a short story about a robot.'}]}).encode()
    request = urllib.request.Request(url + '/chat/completions', data=body, headers={
        'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'})
    started = time.perf_counter()
    first = None
    tokens = 0
    with urllib.request.urlopen(request, timeout=300, context=context) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith('data:') or line == 'data: [DONE]':
                continue
            delta = json.loads(line[5:])['choices'][0].get('delta', {})
            if delta.get('content'):
                tokens += 1
                if first is None:
                    first = time.perf_counter() - started
    return first, time.perf_counter() - started, tokens


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('url')
    parser.add_argument('model')
    parser.add_argument('--ca')
    parser.add_argument('--requests', type=int, default=24)
    parser.add_argument('--concurrency', type=int, default=8)
    parser.add_argument('--max-tokens', type=int, default=32)
    args = parser.parse_args()
    args.key = os.environ['OPENAI_API_KEY']
    context = ssl.create_default_context(cafile=args.ca) if args.url.startswith('https') else None

    stream_once(args.url, args.key, args.model, 4, context)  # warm-up
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(lambda _index: stream_once(args.url, args.key, args.model, args.max_tokens, context),
                                range(args.requests)))
    wall = time.perf_counter() - started
    ttft = [first for first, _total, _tokens in results]
    latency = [total for _first, total, _tokens in results]
    tokens = sum(count for _first, _total, count in results)
    print(json.dumps({
        'url': args.url, 'requests': args.requests, 'concurrency': args.concurrency,
        'ttft_p50': round(statistics.median(ttft), 4), 'ttft_mean': round(statistics.mean(ttft), 4),
        'latency_p50': round(percentile(latency, 0.5), 3), 'latency_p99': round(percentile(latency, 0.99), 3),
        'tokens_per_second': round(tokens / wall, 1), 'requests_per_second': round(args.requests / wall, 2),
    }))


if __name__ == '__main__':
    main()
