# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make `ansible_collections.slm.fastchat` importable from the checkout.

`make collection` links the checkout at .cache/collections/ansible_collections/slm/fastchat;
the bundled collections of the `ansible` package stay importable beside it
because `ansible_collections` is a namespace package.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, '.cache', 'collections')

if not os.path.isdir(os.path.join(COLLECTIONS, 'ansible_collections', 'slm', 'fastchat')):
    raise RuntimeError('run `make collection` first: %s is missing' % COLLECTIONS)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

# FastChat's loggers write controller.log / model_worker_*.log into LOGDIR,
# the working directory by default: keep them out of the checkout.
os.environ.setdefault('LOGDIR', os.path.join(REPO, '.cache', 'test-logs'))
os.makedirs(os.environ['LOGDIR'], exist_ok=True)
