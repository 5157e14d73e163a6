# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a scenario's playbook again from a verifier test, against Molecule's inventory."""

import json
import os
import shutil
import subprocess


def molecule_inventory():
    """The directory of Molecule's generated hosts, its extra groups and group_vars."""
    return os.path.dirname(os.environ['MOLECULE_INVENTORY_FILE'])


def inventory_with(tmp_path, **groups):
    """A copy of Molecule's inventory in which each named group holds exactly the given hosts (a list each).

    For changes of the fleet's shape as an operator makes them in the inventory (scale in, scale out).
    """
    import yaml  # pylint: disable=import-outside-toplevel
    target = tmp_path / 'inventory'
    shutil.copytree(molecule_inventory(), str(target))
    path = target / os.path.basename(os.environ['MOLECULE_INVENTORY_FILE'])
    inventory = yaml.safe_load(path.read_text())
    for group, hosts in groups.items():
        inventory[group] = {'hosts': {host: dict(inventory['all']['hosts'][host]) for host in hosts},
                            'vars': inventory['all'].get('vars', {})}
    path.write_text(yaml.safe_dump(inventory))
    return str(target)


def run_playbook(playbook, extra_vars, tmp_path, check=False, diff=False, inventory=None, tags=None):
    """Run ``playbook`` with ``extra_vars`` (given as a file, as users would); return (rc, flattened output).

    ``inventory`` defaults to Molecule's (see :func:`inventory_with`); ``tags`` is ``--tags``' value.
    """
    vars_file = tmp_path / 'extra-vars.json'
    vars_file.write_text(json.dumps(extra_vars))
    inventory = inventory or molecule_inventory()
    argv = ['ansible-playbook', '-i', inventory, playbook, '-e', '@%s' % vars_file]
    if check:
        argv.append('--check')
    if diff:
        argv.append('--diff')
    if tags:
        argv += ['--tags', tags]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False,
                            env=dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0'))
    return result.returncode, ' '.join((result.stdout + result.stderr).split())
