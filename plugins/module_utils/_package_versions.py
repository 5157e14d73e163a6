# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read package version listings (apt-cache madison, dnf list --showduplicates) and match a pin against them.

A pin is an exact version or a prefix ending in '*'. RPM releases carry the
distribution (580.95.05-1.el9, 27.3.1-1.el9): an exact pin written without it
('580.95.05-1') matches the release with a dist tag, so the documented format
works on every family, and the caller installs the full version matched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# '.el9', '.el9_4', '.module+el9.4.0+...', '.fc40', '.amzn2023'
DIST_TAG = r'(\.(el|fc|amzn|module\+el)[0-9][0-9A-Za-z_.+]*)?'


def package_versions(lines, family='Debian'):
    """Versions in listing order (newest first for both tools), epochs kept on apt and dropped on dnf."""
    versions = []
    for line in lines or []:
        if family == 'Debian':
            fields = [field.strip() for field in line.split('|')]
            if len(fields) >= 2 and fields[1]:
                versions.append(fields[1])
        else:
            # "nvidia-driver.x86_64    3:580.95.05-1.el9    cuda-rhel9-x86_64"
            match = re.match(r'^\S+\.\S+\s+(\S+)\s+\S+', line.strip())
            if match and not line.strip().startswith(('Available', 'Installed', 'Last metadata')):
                versions.append(re.sub(r'^[0-9]+:', '', match.group(1)))
    if family != 'Debian':
        # dnf lists oldest first; show the newest first like apt.
        versions = sorted(set(versions), key=_version_key, reverse=True)
    return versions


def _version_key(version):
    return [(int(part), '') if part.isdigit() else (-1, part) for part in re.split(r'[.\-_+~:]', version)]


def package_version_matches(versions, pin):
    """The listed versions a pin selects, in listing order: exact, exact plus an RPM dist tag, or a '*' prefix."""
    if not pin:
        return list(versions or [])
    if not any(':' in version for version in versions or []):
        # dnf's listing drops epochs: so does the comparison.
        pin = re.sub(r'^[0-9]+:', '', pin)
    if pin.endswith('*'):
        pattern = '^' + re.escape(pin[:-1]) + '.*$'
    else:
        pattern = '^' + re.escape(pin) + DIST_TAG + '$'
    return [version for version in versions or [] if re.match(pattern, version)]


def versionlock_changes(lines, packages, hold=True):
    """What to change in dnf's version locks so they name exactly the installed versions of ``packages``.

    ``lines`` is the output of hold.yml's probe: ``INSTALLED``, one
    ``<name>-<epoch>:<version>-<release>.*`` per installed package, ``LOCKED``
    and the lock list (empty when the versionlock plugin is not installed).
    Returns ``{'add': [...], 'delete': [...]}``: locks of these packages that
    name another version (or every one of them when releasing) are deleted;
    the installed versions are added when holding and not locked yet.
    """
    lines = [line.strip() for line in lines or [] if line.strip()]
    if 'INSTALLED' not in lines or 'LOCKED' not in lines:
        return {'add': [], 'delete': []}
    installed = lines[lines.index('INSTALLED') + 1:lines.index('LOCKED')]
    locked = [line for line in lines[lines.index('LOCKED') + 1:] if not line.startswith('#')]
    pattern = re.compile('^(%s)-[0-9]+:' % '|'.join(re.escape(name).replace(r'\*', '[^:]*') for name in packages))
    ours = [entry for entry in locked if pattern.match(entry)]
    wanted = installed if hold else []
    return {'add': [entry for entry in wanted if entry not in locked],
            'delete': [entry for entry in ours if entry not in wanted]}
