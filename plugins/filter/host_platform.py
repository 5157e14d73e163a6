# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the one platform table (module_utils/_platforms.py) and package version listings."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.slm.fastchat.plugins.module_utils._platforms import host_platform, nvidia_driver_plan
from ansible_collections.slm.fastchat.plugins.module_utils._package_versions import (
    package_version_matches, package_versions, versionlock_changes)


class FilterModule(object):
    def filters(self):
        return {
            'host_platform': host_platform,
            'nvidia_driver_plan': nvidia_driver_plan,
            'package_versions': package_versions,
            'package_version_matches': package_version_matches,
            'versionlock_changes': versionlock_changes,
        }
