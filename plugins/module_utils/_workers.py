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
    'max_gpu_memory', 'device_ids', 'enabled', 'allow_patterns', 'extra_args', 'backend', 'vllm',
))
# vllm: vLLM's engine with continuous batching (slm_fastchat.vllm_worker);
# hf: FastChat's model worker (transformers, one request at a time).
# vLLM is the default: at 8 and 16 concurrent users it gave 4.6x and 6.1x
# the HF worker's tokens/s with 5-15x lower p95 time to first token, and the
# same speed for one user (docs/performance.md); it costs start time and RAM.
BACKENDS = ('vllm', 'hf')
DEFAULT_BACKEND = 'vllm'
DTYPES = ('auto', 'float16', 'bfloat16', 'float32')
QUANTIZATION_RE = re.compile(r'^[a-z0-9][a-z0-9_-]*$')
# The model entry's `vllm` options: (check, what is accepted).
VLLM_OPTIONS = {
    'gpu_memory_utilization': (lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
                               and 0 < value <= 1,
                               'a fraction of each GPU\'s memory above 0 and at most 1, e.g. 0.9'),
    'max_model_len': (lambda value: _is_int(value) and 16 <= value <= 1048576, 'a whole number of tokens from 16'),
    'max_num_seqs': (lambda value: _is_int(value) and 1 <= value <= 4096,
                     'the most sequences batched at once, 1 to 4096'),
    'dtype': (lambda value: value in DTYPES, 'one of %s' % ', '.join(DTYPES)),
    'quantization': (lambda value: isinstance(value, string_types) and QUANTIZATION_RE.match(value),
                     "a vLLM quantization method such as 'awq', 'gptq' or 'fp8'"),
    'tensor_parallel_size': (lambda value: _is_int(value) and 1 <= value <= 64,
                             'a whole number of GPUs that divides gpus_per_worker'),
    'kv_cache_space': (lambda value: _is_int(value) and 1 <= value <= 1024, 'GiB of RAM for the KV cache, 1 to 1024'),
    'enforce_eager': (lambda value: isinstance(value, bool), 'true or false'),
}
# Worker slots when max_num_seqs is not set: vLLM's own default batch size.
VLLM_DEFAULT_MAX_NUM_SEQS = 256
# GiB of RAM for a CPU vLLM worker's KV cache when the entry gives no vllm.kv_cache_space.
VLLM_DEFAULT_CPU_KV_CACHE_GIB = 4


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
        errors.extend(backend_errors(model, label))
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


def backend(model):
    return model.get('backend', DEFAULT_BACKEND)


def backend_errors(model, label):
    """Problems with ``backend`` and the ``vllm`` options that need no host to see."""
    errors = []
    chosen = backend(model)
    if chosen not in BACKENDS:
        return ['%s.backend %r must be one of %s' % (label, chosen, ', '.join(BACKENDS))]
    options = model.get('vllm')
    if options is None:
        options = {}
    if chosen != 'vllm' and options:
        errors.append('%s.vllm is set but backend is %s: set backend: vllm or remove vllm' % (label, chosen))
    if chosen == 'vllm' and model.get('max_gpu_memory') is not None:
        errors.append('%s.max_gpu_memory is an option of the hf backend; with backend vllm set '
                      'vllm.gpu_memory_utilization (a fraction, e.g. 0.9) instead' % label)
    if not isinstance(options, dict):
        return errors + ['%s.vllm must be a dict of vLLM options (%s)' % (label, ', '.join(sorted(VLLM_OPTIONS)))]
    unknown = sorted(set(options) - set(VLLM_OPTIONS))
    if unknown:
        errors.append('%s.vllm: unknown keys %s; accepted: %s (other engine arguments go in extra_args)'
                      % (label, ', '.join(unknown), ', '.join(sorted(VLLM_OPTIONS))))
    for key in sorted(set(options) & set(VLLM_OPTIONS)):
        check, accepted = VLLM_OPTIONS[key]
        if not check(options[key]):
            errors.append('%s.vllm.%s %r must be %s' % (label, key, options[key], accepted))
    tensor_parallel = options.get('tensor_parallel_size')
    gpus = model.get('gpus_per_worker', 1)
    if _is_int(tensor_parallel) and _is_int(gpus) and tensor_parallel >= 1 and gpus % tensor_parallel:
        errors.append('%s.vllm.tensor_parallel_size %d does not divide gpus_per_worker %d: each worker splits the '
                      'model over its own GPUs' % (label, tensor_parallel, gpus))
    return errors


def device_errors(model, label, device):
    """Options that cannot work on ``device`` (cuda or cpu)."""
    if backend(model) != 'vllm':
        return []
    options = model.get('vllm') or {}
    errors = []
    if device == 'cpu':
        cuda_only = [key for key in ('gpu_memory_utilization', 'quantization') if key in options]
        if options.get('tensor_parallel_size', 1) != 1:
            cuda_only.append('tensor_parallel_size')
        if cuda_only:
            errors.append('%s.vllm.%s only work on GPUs but fastchat_device is cpu: remove %s (on CPU the KV cache '
                          'size is vllm.kv_cache_space)' % (label, ', '.join(cuda_only),
                                                            'it' if len(cuda_only) == 1 else 'them'))
    elif 'kv_cache_space' in options:
        errors.append('%s.vllm.kv_cache_space is for CPU hosts; on GPUs vLLM sizes the KV cache from '
                      'vllm.gpu_memory_utilization' % label)
    return errors


def engine_args(model, device, gpus):
    """vLLM engine arguments for one worker of ``model`` on ``device`` with ``gpus`` GPUs.

    Eager mode (no graph capture) is the default on CPU: it starts in about a
    minute instead of 2-4.5 and was as fast at SLM sizes; GPUs keep CUDA graphs.
    """
    options = model.get('vllm') or {}
    args = []
    for key in ('dtype', 'max_model_len', 'max_num_seqs', 'gpu_memory_utilization', 'quantization'):
        if key in options:
            args.append('--%s=%s' % (key.replace('_', '-'), options[key]))
    if device == 'cuda':
        args.append('--tensor-parallel-size=%d' % options.get('tensor_parallel_size', gpus or 1))
    if options.get('enforce_eager', device == 'cpu'):
        args.append('--enforce-eager')
    return args


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
    for index, model in enabled:
        errors.extend(device_errors(model, '%s[%d] (%s)' % (variable, index, model['name']), device))
    if errors:
        return [], errors
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
                'backend': backend(model),
                # vLLM's engine arguments, its environment and how many requests the worker takes at once.
                'engine_args': engine_args(model, device, len(group)) if backend(model) == 'vllm' else [],
                # On CPUs an unset VLLM_CPU_KVCACHE_SPACE let vLLM 0.32 grow to
                # 22 GB of a 24 GB host under load (measured): always bounded.
                'environment': (
                    {'VLLM_CPU_KVCACHE_SPACE': str((model.get('vllm') or {}).get(
                        'kv_cache_space', VLLM_DEFAULT_CPU_KV_CACHE_GIB))}
                    if backend(model) == 'vllm' and device == 'cpu' else {}),
                'concurrency': ((model.get('vllm') or {}).get('max_num_seqs', VLLM_DEFAULT_MAX_NUM_SEQS)
                                if backend(model) == 'vllm' else None),
            })
    services = [worker['service'] for worker in workers]
    duplicates = sorted(set(service for service in services if services.count(service) > 1))
    if duplicates:
        return [], ['%s: model names %s map to the same service name; rename one' % (variable, ', '.join(duplicates))]
    return workers, []
