# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A load client that records every request's outcome: the official openai client, streaming, no retries."""

import threading
import time


class Load(object):
    """``users`` threads send streamed chat completions back to back until :meth:`stop`.

    Each outcome is ``(start, end, error)``: seconds on ``time.monotonic()``
    and ``None`` for a request that streamed to its end, else the error's
    text. The client never retries (``max_retries=0``): a failure here is a
    failure a user would see.
    """

    def __init__(self, client, model, users=4, max_tokens=8):
        self.client = client.with_options(max_retries=0, timeout=120)
        self.model = model
        self.users = users
        self.max_tokens = max_tokens
        self.outcomes = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    def _one(self, number):
        start = time.monotonic()
        error = None
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=[{'role': 'user', 'content': 'request %d' % number}],
                max_tokens=self.max_tokens, temperature=0, stream=True)
            chunks = list(stream)
            if not chunks or chunks[-1].choices[0].finish_reason is None:
                error = 'stream ended without a finish_reason after %d chunks' % len(chunks)
        except Exception as failure:  # pylint: disable=broad-exception-caught
            error = '%s: %s' % (type(failure).__name__, failure)
        with self._lock:
            self.outcomes.append((start, time.monotonic(), error))

    def _user(self, index):
        number = index
        while not self._stop.is_set():
            self._one(number)
            number += self.users

    def start(self):
        self._threads = [threading.Thread(target=self._user, args=(index,), daemon=True) for index in range(self.users)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)
        return list(self.outcomes)


def failures(outcomes):
    return [outcome for outcome in outcomes if outcome[2] is not None]
