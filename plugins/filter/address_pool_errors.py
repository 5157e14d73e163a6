# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate Docker's bridge address settings before daemon.json is written.

A malformed ``bip`` or ``default-address-pools`` entry makes dockerd refuse to
start after a restart, taking every container on the host down with it, so
the docker role checks them in preflight and reports every problem at once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible.module_utils.six import string_types


def _network(value, label, errors):
    """Parse a strict IPv4 network (host bits zero); append an error if it is not one."""
    if not isinstance(value, string_types) or '/' not in value:
        errors.append("%s: %r is not a CIDR network such as '10.214.0.0/16'" % (label, value))
        return None
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        errors.append("%s: %r is not an IPv4 network with its host bits zero (%s)" % (label, value, exc))
        return None


def address_pool_errors(pools, bip=''):
    """Return a list of human-readable problems with ``pools`` and ``bip``; empty when valid.

    ``pools`` is Docker's ``default-address-pools`` list: dicts with ``base``
    (an IPv4 network) and ``size`` (the prefix length of each network carved
    from it, at least the base's own prefix and at most 30).  ``bip`` is the
    default bridge's address in interface notation (``10.213.0.1/24``), or
    empty when Docker picks it.
    """
    errors = []
    networks = []
    if pools is None:
        pools = []
    if not isinstance(pools, list):
        return ["docker_daemon_default_address_pools must be a list of {base, size} dicts, got %r" % (pools,)]

    for index, pool in enumerate(pools):
        label = 'docker_daemon_default_address_pools[%d]' % index
        if not isinstance(pool, dict) or set(pool) != {'base', 'size'}:
            errors.append("%s: %r must be a dict with exactly the keys 'base' and 'size'" % (label, pool))
            continue
        network = _network(pool['base'], label + '.base', errors)
        size = pool['size']
        if isinstance(size, bool) or not isinstance(size, int):
            errors.append("%s.size: %r must be an integer prefix length" % (label, size))
            continue
        if network is None:
            continue
        if not network.prefixlen <= size <= 30:
            errors.append("%s.size: %d must be between the base's prefix length %d and 30"
                          % (label, size, network.prefixlen))
        for other_label, other in networks:
            if network.overlaps(other):
                errors.append("%s.base: %s overlaps %s (%s)" % (label, network, other, other_label))
        networks.append((label, network))

    if bip:
        try:
            interface = ipaddress.IPv4Interface(bip)
        except ValueError as exc:
            errors.append("docker_daemon_bip: %r is not an IPv4 address with prefix such as '10.213.0.1/24' (%s)" % (bip, exc))
        else:
            if '/' not in str(bip):
                errors.append("docker_daemon_bip: %r needs a prefix length, e.g. '%s/24'" % (bip, bip))
            elif interface.ip in (interface.network.network_address, interface.network.broadcast_address):
                errors.append("docker_daemon_bip: %r is the network or broadcast address; use a host address such as '%s'"
                              % (bip, next(interface.network.hosts(), interface.ip)))
            for other_label, other in networks:
                if interface.network.overlaps(other):
                    errors.append("docker_daemon_bip: %s overlaps %s (%s)" % (bip, other, other_label))
    return errors


class FilterModule(object):
    def filters(self):
        return {'address_pool_errors': address_pool_errors}
