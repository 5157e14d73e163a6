# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.slm.fastchat.plugins.filter.address_pool_errors import address_pool_errors


@pytest.mark.parametrize('pools, bip', [
    ([], ''),
    (None, ''),
    ([{'base': '10.214.0.0/16', 'size': 24}], '10.213.0.1/24'),
    ([{'base': '10.214.0.0/16', 'size': 24}, {'base': '10.215.0.0/16', 'size': 26}], ''),
    ([{'base': '192.168.0.0/24', 'size': 24}], '172.30.0.1/16'),
])
def test_valid_settings_have_no_errors(pools, bip):
    assert address_pool_errors(pools, bip) == []


@pytest.mark.parametrize('pools, bip, expected', [
    ('10.0.0.0/8', '', 'must be a list'),
    ([{'base': '10.214.0.0/16'}], '', "exactly the keys 'base' and 'size'"),
    ([{'base': '10.214.0.0/16', 'size': 24, 'extra': 1}], '', "exactly the keys"),
    ([{'base': '10.214.0.0', 'size': 24}], '', 'is not a CIDR network'),
    ([{'base': '10.214.0.1/16', 'size': 24}], '', 'host bits zero'),
    ([{'base': '10.300.0.0/16', 'size': 24}], '', 'host bits zero'),
    ([{'base': '10.214.0.0/16', 'size': 8}], '', 'between the base'),
    ([{'base': '10.214.0.0/16', 'size': 31}], '', 'between the base'),
    ([{'base': '10.214.0.0/16', 'size': '24'}], '', 'must be an integer'),
    ([{'base': '10.214.0.0/16', 'size': True}], '', 'must be an integer'),
    ([{'base': '10.0.0.0/8', 'size': 24}, {'base': '10.214.0.0/16', 'size': 24}], '', 'overlaps 10.0.0.0/8'),
    ([], 'not-an-ip', 'docker_daemon_bip'),
    ([], '10.213.0.1', 'needs a prefix length'),
    ([], '10.213.0.0/24', 'network or broadcast address'),
    ([{'base': '10.213.0.0/16', 'size': 24}], '10.213.0.1/24', 'docker_daemon_bip: 10.213.0.1/24 overlaps'),
])
def test_each_problem_is_reported_with_the_variable_name(pools, bip, expected):
    errors = address_pool_errors(pools, bip)
    assert errors, 'expected an error for %r / %r' % (pools, bip)
    assert any(expected in error for error in errors), errors
    assert all(error.startswith('docker_daemon_') for error in errors), errors


def test_every_problem_is_reported_at_once():
    errors = address_pool_errors([{'base': '10.214.0.1/16', 'size': 24}, {'base': 'x/8', 'size': 40}], 'bad')
    assert len(errors) == 3, errors
