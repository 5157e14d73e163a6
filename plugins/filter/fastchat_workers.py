# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that derive FastChat model workers from the model list (see module_utils/_workers.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.slm.fastchat.plugins.module_utils._workers import backend, enabled_models, model_errors, place_workers


def fastchat_workers(models, gpu_count=0, device='cuda'):
    workers, errors = place_workers(models, gpu_count, device)
    if errors:
        raise AnsibleFilterError('; '.join(errors))
    return workers


def fastchat_model_errors(models, gpu_count=0, device='cuda', allow_unpinned=False):
    errors = model_errors(models, allow_unpinned=allow_unpinned)
    if not errors:
        errors = place_workers(models, gpu_count, device)[1]
    return errors


def fastchat_backends(models):
    """Sorted backends (vllm, hf) of the enabled entries: which images a worker host needs."""
    return sorted(set(backend(model) for model in enabled_models(models) if isinstance(model, dict)))


class FilterModule(object):
    def filters(self):
        return {
            'fastchat_workers': fastchat_workers,
            'fastchat_model_errors': fastchat_model_errors,
            'fastchat_enabled_models': enabled_models,
            'fastchat_backends': fastchat_backends,
        }
