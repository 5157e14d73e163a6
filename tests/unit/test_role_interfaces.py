# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each role's argument spec is its variable reference: it must match defaults/main.yml exactly."""

import glob
import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(REPO, 'roles', '*', 'tasks')))


def load(role, path):
    full = os.path.join(REPO, 'roles', role, path)
    if not os.path.exists(full):
        return None
    with open(full) as handle:
        return yaml.safe_load(handle) or {}


def spec_options(role):
    """Options of every entry point (main, and tasks_from ones such as verify), merged."""
    options = {}
    for entry in load(role, 'meta/argument_specs.yml')['argument_specs'].values():
        options.update(entry.get('options') or {})
    return options


def test_there_are_roles():
    assert 'docker' in ROLES


@pytest.mark.parametrize('role', ROLES)
def test_argument_spec_documents_every_default_and_nothing_else(role):
    defaults = load(role, 'defaults/main.yml') or {}
    spec = load(role, 'meta/argument_specs.yml')
    assert spec, 'roles/%s/meta/argument_specs.yml is missing' % role
    options = spec_options(role)
    # Required inputs (entry points other roles call with their own values) have no default.
    optional = [name for name, option in options.items() if not option.get('required')]
    assert sorted(defaults) == sorted(optional), 'defaults and argument spec differ for %s' % role


@pytest.mark.parametrize('role', ROLES)
def test_every_option_is_typed_described_and_prefixed(role):
    options = spec_options(role)
    for name, option in options.items():
        assert name.startswith(role + '_'), '%s: %s lacks the role prefix' % (role, name)
        assert option.get('type'), '%s: %s has no type' % (role, name)
        assert option.get('description'), '%s: %s has no description' % (role, name)


@pytest.mark.parametrize('role', ROLES)
def test_literal_defaults_match_the_spec(role):
    """Where a default is a literal (not a template), the spec states the same value."""
    defaults = load(role, 'defaults/main.yml') or {}
    options = spec_options(role)
    for name, value in defaults.items():
        if '{{' in str(value):
            continue
        assert options[name].get('default') == value, '%s: %s default %r != spec %r' % (
            role, name, value, options[name].get('default'))
        if options[name].get('choices'):
            assert value in options[name]['choices'], '%s: default of %s not among its choices' % (role, name)


@pytest.mark.parametrize('role', ROLES)
def test_computed_vars_are_private(role):
    """A public name in vars/ would silently beat the inventory."""
    for path in glob.glob(os.path.join(REPO, 'roles', role, 'vars', '*.yml')):
        with open(path) as handle:
            for name in yaml.safe_load(handle) or {}:
                assert name.startswith('__%s_' % role), '%s: %s in %s is not __%s_*' % (role, name, path, role)
