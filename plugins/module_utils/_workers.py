# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the fleet's model list into FastChat model workers placed on GPUs.

Internal to slm.fastchat (the leading underscore): the filters
``fastchat_workers`` and ``fastchat_model_errors`` are the public faces.
Users describe models; this code derives one worker per GPU group, so the
compose file never has to be edited by hand, and it refuses placements that
would make two workers fight over one GPU or ask for GPUs the host lacks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os
import re

from ansible.module_utils.six import integer_types, string_types

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$')
REVISION_RE = re.compile(r'^[0-9a-f]{40}$')
MEMORY_RE = re.compile(r'^[1-9][0-9]*(\.[0-9]+)?(GiB|MiB|GB|MB)$')
REPO_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$')
SOURCES = ('hub', 'local')
# Model families: the image's extension registers a conversation template
# under each name. Their one home is the extension's families.py, which this
# (controller-side, filters only) code loads from the collection's own files.
FAMILIES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'roles', 'image', 'files',
                             'slm_fastchat', 'families.py')


def _load_families(path=FAMILIES_FILE):
    spec = importlib.util.spec_from_file_location('_slm_fastchat_families', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.FAMILIES)


FAMILIES = _load_families()
DEVICES = ('cuda', 'cpu')
KNOWN_KEYS = frozenset((
    'name', 'source', 'repo', 'revision', 'path', 'family', 'conv_template', 'workers', 'gpus_per_worker',
    'max_gpu_memory', 'device_ids', 'enabled', 'allow_patterns', 'extra_args',
))


def _is_int(value):
    return isinstance(value, integer_types) and not isinstance(value, bool)


def model_errors(models, allow_unpinned=False, variable='fastchat_models'):
    """Return one message per problem in the model list; empty when it is valid.

    Placement (GPU counts) is checked by :func:`place_workers`, which needs the host.
    """
    if not isinstance(models, list):
        return ['%s must be a list of model entries, got %s' % (variable, type(models).__name__)]
    errors = []
    seen = set()
    for index, model in enumerate(models):
        label = '%s[%d]' % (variable, index)
        if not isinstance(model, dict):
            errors.append('%s must be a dict with at least name, repo or path, and family' % label)
            continue
        name = model.get('name')
        if isinstance(name, string_types) and name:
            label = '%s[%d] (%s)' % (variable, index, name)
        unknown = sorted(set(model) - KNOWN_KEYS)
        if unknown:
            errors.append('%s: unknown keys %s; accepted: %s' % (label, ', '.join(unknown), ', '.join(sorted(KNOWN_KEYS))))
        if not isinstance(name, string_types) or not NAME_RE.match(name):
            errors.append('%s.name %r must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit'
                          % (label, name))
        elif name in seen:
            errors.append('%s.name %r is used twice; served model names must be unique' % (label, name))
        else:
            seen.add(name)
        source = model.get('source', 'hub')
        if source not in SOURCES:
            errors.append('%s.source %r must be one of %s' % (label, source, ', '.join(SOURCES)))
        elif source == 'hub':
            if not isinstance(model.get('repo'), string_types) or not REPO_RE.match(model['repo']):
                errors.append("%s.repo %r must be a Hugging Face repository id such as 'microsoft/phi-4'"
                              % (label, model.get('repo')))
            revision = model.get('revision')
            if revision is None or revision == '':
                if not allow_unpinned:
                    errors.append('%s.revision is missing: pin the 40-character commit hash of %s (or set '
                                  'fastchat_allow_unpinned_models: true to accept whatever the Hub serves)'
                                  % (label, model.get('repo')))
            elif not isinstance(revision, string_types) or not (REVISION_RE.match(revision) or allow_unpinned):
                errors.append('%s.revision %r must be a 40-character lowercase commit hash (branches and tags move; '
                              'set fastchat_allow_unpinned_models: true to accept them)' % (label, revision))
        elif source == 'local':
            if not isinstance(model.get('path'), string_types) or not model['path'].startswith('/'):
                errors.append('%s.path %r must be an absolute directory on the control node' % (label, model.get('path')))
        errors.extend(template_errors(model, label))
        for key in ('workers', 'gpus_per_worker'):
            value = model.get(key, 1)
            if not _is_int(value) or not 1 <= value <= 64:
                errors.append('%s.%s %r must be an integer from 1 to 64' % (label, key, value))
        memory = model.get('max_gpu_memory')
        if memory is not None and (not isinstance(memory, string_types) or not MEMORY_RE.match(memory)):
            errors.append("%s.max_gpu_memory %r must look like '22GiB'" % (label, memory))
        if not isinstance(model.get('enabled', True), bool):
            errors.append('%s.enabled must be true or false' % label)
        extra = model.get('extra_args', [])
        if not isinstance(extra, list) or not all(isinstance(arg, string_types) for arg in extra):
            errors.append('%s.extra_args must be a list of strings' % label)
        device_ids = model.get('device_ids')
        if device_ids is not None:
            workers = model.get('workers', 1)
            if (not isinstance(device_ids, list) or not all(isinstance(group, list) for group in device_ids)
                    or not all(_is_int(gpu) and gpu >= 0 for group in device_ids for gpu in group)):
                errors.append('%s.device_ids must be a list (one per worker) of lists of GPU indexes, e.g. [[0, 1], [2, 3]]'
                              % label)
            elif _is_int(workers) and len(device_ids) != workers:
                errors.append('%s.device_ids lists %d GPU groups but workers is %d' % (label, len(device_ids), workers))
    return errors


def template_errors(model, label):
    family = model.get('family')
    template = model.get('conv_template')
    errors = []
    if family is not None and family not in FAMILIES:
        errors.append('%s.family %r is not a supported model family; supported: %s (or set conv_template to a '
                      "FastChat template name; docs/models.md)" % (label, family, ', '.join(FAMILIES)))
    if template is not None and (not isinstance(template, string_types) or not template):
        errors.append('%s.conv_template %r must be the non-empty name of a FastChat conversation template'
                      % (label, template))
    if family is None and template is None:
        errors.append('%s has neither family nor conv_template: set family to one of %s (or conv_template to a '
                      'FastChat template name); FastChat would otherwise guess the template from the path'
                      % (label, ', '.join(FAMILIES)))
    return errors


def conv_template(model):
    """The conversation template a model's workers start with: its own, else its family's."""
    return model.get('conv_template') or model['family']


def enabled_models(models):
    """The entries to serve, in list order: every one whose ``enabled`` is not false."""
    return [model for model in models or [] if not isinstance(model, dict) or model.get('enabled', True)]


def place_workers(models, gpu_count, device='cuda', variable='fastchat_models'):
    """Return (workers, errors): one worker per GPU group for each enabled model.

    Explicit ``device_ids`` are honoured; the rest are packed onto the lowest
    free GPUs in model order, so adding a model at the end never moves the
    workers of the ones before it.
    """
    if device not in DEVICES:
        return [], ['fastchat_device %r must be one of %s' % (device, ', '.join(DEVICES))]
    if not _is_int(gpu_count) or gpu_count < 0:
        return [], ['fastchat_gpu_count %r must be a whole number of GPUs' % (gpu_count,)]
    errors = model_errors(models, allow_unpinned=True, variable=variable)
    if errors:
        return [], errors

    enabled = [(index, model) for index, model in enumerate(models) if model.get('enabled', True)]
    owner = {}
    errors = []
    if device == 'cuda':
        # Explicit placements first, so automatic packing works around them.
        for index, model in enabled:
            for number, group in enumerate(model.get('device_ids') or [], start=1):
                gpus_per_worker = model.get('gpus_per_worker', 1)
                if len(group) != gpus_per_worker:
                    errors.append('%s[%d] (%s).device_ids[%d] has %d GPUs but gpus_per_worker is %d'
                                  % (variable, index, model['name'], number - 1, len(group), gpus_per_worker))
                for gpu in group:
                    if gpu >= gpu_count:
                        errors.append('%s[%d] (%s) worker %d asks for GPU %d but the host has %d GPUs (0-%d)'
                                      % (variable, index, model['name'], number, gpu, gpu_count, gpu_count - 1))
                    elif gpu in owner:
                        errors.append('%s[%d] (%s) worker %d and %s both want GPU %d; a GPU serves one worker'
                                      % (variable, index, model['name'], number, owner[gpu], gpu))
                    else:
                        owner[gpu] = '%s worker %d' % (model['name'], number)
        needed = sum(model.get('workers', 1) * model.get('gpus_per_worker', 1) for _index, model in enabled)
        if needed > gpu_count:
            errors.append('%s needs %d GPUs (%s) but the host has %d; lower workers or gpus_per_worker, '
                          'disable a model, or add GPUs' % (
                              variable, needed,
                              ', '.join('%s: %d x %d' % (model['name'], model.get('workers', 1), model.get('gpus_per_worker', 1))
                                        for _index, model in enabled),
                              gpu_count))
        if errors:
            return [], errors

    workers = []
    for index, model in enabled:
        explicit = model.get('device_ids')
        for number in range(1, model.get('workers', 1) + 1):
            if device == 'cuda':
                if explicit:
                    group = sorted(explicit[number - 1])
                else:
                    free = [gpu for gpu in range(gpu_count) if gpu not in owner]
                    group = free[:model.get('gpus_per_worker', 1)]
                    for gpu in group:
                        owner[gpu] = '%s worker %d' % (model['name'], number)
            else:
                group = []
            workers.append({
                'service': 'fastchat-worker-%s-%d' % (re.sub(r'[^a-z0-9-]+', '-', model['name'].lower()).strip('-'), number),
                'model': model['name'],
                'number': number,
                'conv_template': conv_template(model),
                'device': device,
                'device_ids': [str(gpu) for gpu in group],
                'num_gpus': len(group),
                'max_gpu_memory': model.get('max_gpu_memory') if device == 'cuda' else None,
                'extra_args': list(model.get('extra_args', [])),
            })
    services = [worker['service'] for worker in workers]
    duplicates = sorted(set(service for service in services if services.count(service) > 1))
    if duplicates:
        return [], ['%s: model names %s map to the same service name; rename one' % (variable, ', '.join(duplicates))]
    return workers, []
