# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a scenario's playbook again from a verifier test, against Molecule's inventory."""

import json
import os
import subprocess


def run_playbook(playbook, extra_vars, tmp_path, check=False, diff=False):
    """Run ``playbook`` with ``extra_vars`` (given as a file, as users would); return (rc, flattened output)."""
    vars_file = tmp_path / 'extra-vars.json'
    vars_file.write_text(json.dumps(extra_vars))
    # The directory: Molecule's generated hosts, its extra groups and group_vars.
    inventory = os.path.dirname(os.environ['MOLECULE_INVENTORY_FILE'])
    argv = ['ansible-playbook', '-i', inventory, playbook, '-e', '@%s' % vars_file]
    if check:
        argv.append('--check')
    if diff:
        argv.append('--diff')
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False,
                            env=dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0'))
    return result.returncode, ' '.join((result.stdout + result.stderr).split())
