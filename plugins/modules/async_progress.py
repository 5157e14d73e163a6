#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: async_progress
short_description: Wait for an async task and show its progress while it runs
version_added: 0.1.0
description:
  - Waits for a task started with C(async) and C(poll) set to C(0) to finish, like a polled async task, but instead of
    C(ASYNC POLL ... finished=False) lines it prints, whenever it changes, the last line that O(progress_command)
    prints on the host (for example the step an image build is at, or a download's progress bar).
  - Returns the job's own result; fails when the job failed, quoting the last progress line.
  - An action plugin. The waiting happens on the control node, the progress command and the job on the host.
author: slm.fastchat contributors (@slm-fastchat)
options:
  jid:
    description: The C(ansible_job_id) the async task registered.
    type: str
    required: true
  progress_command:
    description:
      - An argv run on the host at each poll; the last non-empty line of its output (a carriage return also ends a
        line) is the progress shown. Empty shows nothing but still waits.
    type: list
    elements: str
    default: []
  label:
    description: What the progress lines are prefixed with; the task name by default.
    type: str
  interval:
    description: Seconds between polls.
    type: int
    default: 10
  timeout:
    description: Seconds to wait before failing.
    type: int
    default: 7200
extends_documentation_fragment:
  - slm.fastchat.attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Build the image in the background
  ansible.builtin.shell:
    cmd: docker buildx build --progress=plain -t app:1 /srv/build > /var/log/app-build.log 2>&1
  async: 7200
  poll: 0
  register: build

- name: Wait for the build, showing its current step
  slm.fastchat.async_progress:
    jid: "{{ build.ansible_job_id }}"
    progress_command: [tail, -c, "2000", /var/log/app-build.log]
    label: build
'''

RETURN = r'''
progress:
  description: The last progress line seen.
  type: str
  returned: always
'''
