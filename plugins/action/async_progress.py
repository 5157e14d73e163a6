# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for an async task, showing its progress line by line (see the module's documentation)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

# Terminal control sequences (colours, cursor moves) that progress bars print.
_CONTROL_RE = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


def last_lines(text, count=1):
    """The last ``count`` non-empty lines of ``text``, where a carriage return also ends a line (progress bars)."""
    text = _CONTROL_RE.sub('', to_text(text, errors='surrogate_or_replace'))
    lines = [line.strip()[:240] for line in re.split(r'[\r\n]+', text) if line.strip()]
    return lines[-count:]


def last_line(text):
    """The last non-empty line of ``text`` (a carriage return also ends a line), or ''."""
    return (last_lines(text) or [''])[0]


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('jid', 'progress_command', 'label', 'interval', 'timeout'))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = self._task.args
        jid = args.get('jid')
        if not jid:
            raise AnsibleActionFail('async_progress needs jid, the ansible_job_id of a task run with poll: 0')
        command = args.get('progress_command') or []
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise AnsibleActionFail('progress_command must be a list of strings (an argv), got %r' % (command,))
        label = args.get('label') or self._task.get_name()
        interval = max(1, int(args.get('interval', 10)))
        timeout = int(args.get('timeout', 7200))
        host = task_vars.get('inventory_hostname', '') if task_vars else ''

        # Where async tasks keep their status files, as ansible.builtin.async_status finds it.
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        started = time.time()
        shown = None
        line = ''
        while True:
            status = self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                                          module_args={'jid': jid, 'mode': 'status', '_async_dir': async_dir})
            if status.get('failed') and not status.get('finished'):
                raise AnsibleActionFail('cannot follow job %s: %s' % (jid, status.get('msg', status)))
            line = ''
            probe = {}
            if command:
                probe = self._low_level_execute_command(
                    ' '.join(self._connection._shell.quote(part) for part in command) + ' 2>&1')
                line = last_line(probe.get('stdout', ''))
            if status.get('finished'):
                break
            if line and line != shown:
                display.display('%s | %s [%ds]: %s' % (host, label, time.time() - started, line))
                shown = line
            if time.time() - started > timeout:
                raise AnsibleActionFail('%s did not finish within %d s; last progress: %s' % (label, timeout, shown))
            time.sleep(interval)

        # The job's own result, as if the task had run with a poll interval.
        for key in ('ansible_job_id', 'finished', 'started', 'results_file', 'stdout_lines', 'stderr_lines'):
            status.pop(key, None)
        result.update(status)
        result['progress'] = line or shown or ''
        if status.get('failed') or status.get('rc', 0) not in (0, None):
            result['failed'] = True
            tail = last_lines(probe.get('stdout', ''), 15)
            result['msg'] = '%s failed (%s)%s' % (label, status.get('msg') or 'rc %s' % status.get('rc'),
                                                  '; its last output:\n' + '\n'.join(tail) if tail else '')
        # The job is done: remove its status file, as a polled async task does.
        self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                             module_args={'jid': jid, 'mode': 'cleanup', '_async_dir': async_dir})
        return result
