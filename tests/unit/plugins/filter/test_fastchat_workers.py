# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.slm.fastchat.plugins.filter.fastchat_workers import FilterModule, fastchat_model_errors, fastchat_workers
from ansible_collections.slm.fastchat.plugins.module_utils._workers import FAMILIES

REV = 'a' * 40


def model(name='phi-4', **overrides):
    entry = {'name': name, 'repo': 'microsoft/%s' % name, 'revision': REV, 'family': 'phi-4'}
    entry.update(overrides)
    return entry


def test_seed_deployment_two_phi4_workers_of_two_gpus():
    workers = fastchat_workers([model(workers=2, gpus_per_worker=2, max_gpu_memory='22GiB', backend='hf')], 4, 'cuda')
    assert [w['device_ids'] for w in workers] == [['0', '1'], ['2', '3']]
    assert [w['num_gpus'] for w in workers] == [2, 2]
    assert [w['service'] for w in workers] == ['fastchat-worker-phi-4-1', 'fastchat-worker-phi-4-2']
    assert all(w['max_gpu_memory'] == '22GiB' and w['conv_template'] == 'phi-4' for w in workers)


def test_models_pack_in_order_and_disabled_ones_take_nothing():
    models = [model(workers=1, gpus_per_worker=2), model('swallow', enabled=False, gpus_per_worker=4),
              model('small', workers=2)]
    workers = fastchat_workers(models, 4, 'cuda')
    assert [(w['model'], w['device_ids']) for w in workers] == [
        ('phi-4', ['0', '1']), ('small', ['2']), ('small', ['3'])]


def test_explicit_device_ids_are_kept_and_others_pack_around_them():
    models = [model(workers=1, device_ids=[[1]]), model('small', workers=2)]
    workers = fastchat_workers(models, 3, 'cuda')
    assert [(w['model'], w['device_ids']) for w in workers] == [
        ('phi-4', ['1']), ('small', ['0']), ('small', ['2'])]


def test_cpu_mode_uses_no_gpus():
    workers = fastchat_workers([model(workers=2, gpus_per_worker=2, max_gpu_memory='22GiB', backend='hf')], 0, 'cpu')
    assert [(w['device'], w['device_ids'], w['num_gpus'], w['max_gpu_memory']) for w in workers] == [
        ('cpu', [], 0, None), ('cpu', [], 0, None)]


def test_model_names_become_valid_service_names():
    workers = fastchat_workers([model('Llama-3.1-Swallow-8B')], 1, 'cuda')
    assert workers[0]['service'] == 'fastchat-worker-llama-3-1-swallow-8b-1'


@pytest.mark.parametrize('models, gpus, device, expected', [
    ([model(workers=3, gpus_per_worker=2)], 4, 'cuda', 'needs 6 GPUs (phi-4: 3 x 2) but the host has 4'),
    ([model(device_ids=[[0]]), model('b', device_ids=[[0]])], 2, 'cuda', 'both want GPU 0'),
    ([model(device_ids=[[5]])], 4, 'cuda', 'asks for GPU 5 but the host has 4 GPUs'),
    ([model(workers=2, device_ids=[[0]])], 4, 'cuda', 'lists 1 GPU groups but workers is 2'),
    ([model(gpus_per_worker=2, device_ids=[[0]])], 4, 'cuda', 'has 1 GPUs but gpus_per_worker is 2'),
    ([model()], 1, 'rocm', "fastchat_device 'rocm'"),
    ([model()], -1, 'cuda', 'fastchat_gpu_count'),
    ([model(), model()], 2, 'cuda', "'phi-4' is used twice"),
    ([model('a.b'), model('a_b')], 2, 'cuda', 'map to the same service name'),
])
def test_placement_problems_are_explained(models, gpus, device, expected):
    with pytest.raises(AnsibleFilterError) as excinfo:
        fastchat_workers(models, gpus, device)
    assert expected in str(excinfo.value)
    assert expected in ' '.join(fastchat_model_errors(models, gpus, device))


@pytest.mark.parametrize('entry, expected', [
    (model(revision=None), 'fastchat_models[0] (phi-4).revision is missing'),
    (model(revision='main'), "revision 'main' must be a 40-character"),
    (model(repo='phi-4'), "repo 'phi-4' must be a Hugging Face repository id"),
    (model(conv_template=''), "conv_template '' must be the non-empty name"),
    (model(family='gemma-3'), "fastchat_models[0] (phi-4).family 'gemma-3' is not a supported model family; "
                              'supported: chatml, smollm2, phi-4, llama-3, llama-3.1, gemma-2'),
    (dict((k, v) for k, v in model().items() if k != 'family'),
     'fastchat_models[0] (phi-4) has neither family nor conv_template'),
    (model(source='s3'), "source 's3' must be one of hub, local"),
    ({'name': 'tiny', 'source': 'local', 'path': 'relative/dir', 'family': 'chatml'}, 'must be an absolute directory'),
    (model(workers=0), 'workers 0 must be an integer from 1 to 64'),
    (model(gpus_per_worker='2'), "gpus_per_worker '2' must be an integer"),
    (model(max_gpu_memory='22G', backend='hf'), "max_gpu_memory '22G' must look like '22GiB'"),
    (model(name='bad name'), "name 'bad name' must be"),
    (model(wrokers=2), 'unknown keys wrokers'),
    (model(enabled='yes'), 'enabled must be true or false'),
    (model(extra_args='--foo'), 'extra_args must be a list of strings'),
    ('phi-4', 'fastchat_models[0] must be a dict'),
])
def test_entry_problems_name_the_entry(entry, expected):
    errors = fastchat_model_errors([entry], 4, 'cuda')
    assert any(expected in error for error in errors), errors


def test_unpinned_hub_models_are_accepted_only_when_allowed():
    assert fastchat_model_errors([model(revision=None)], 1, 'cuda', allow_unpinned=True) == []
    assert fastchat_model_errors([model(revision='main')], 1, 'cuda', allow_unpinned=True) == []
    assert fastchat_model_errors([model(revision='main')], 1, 'cuda') != []


def test_local_models_need_no_revision():
    entry = {'name': 'tiny', 'source': 'local', 'path': '/srv/models/tiny', 'family': 'chatml'}
    assert fastchat_model_errors([entry], 0, 'cpu') == []


def test_not_a_list():
    assert fastchat_model_errors({'name': 'x'}, 1, 'cuda') == ['fastchat_models must be a list of model entries, got dict']


def test_enabled_models_keep_list_order_and_drop_disabled_entries():
    enabled = FilterModule().filters()['fastchat_enabled_models']
    models = [model('a'), model('b', enabled=False), model('c', enabled=True)]
    assert [entry['name'] for entry in enabled(models)] == ['a', 'c']
    assert enabled(None) == []


@pytest.mark.parametrize('overrides, expected', [
    ({'family': 'gemma-2'}, 'gemma-2'),
    ({'family': 'gemma-2', 'conv_template': 'my-gemma'}, 'my-gemma'),
    ({'family': None, 'conv_template': 'qwen-7b-chat'}, 'qwen-7b-chat'),
])
def test_workers_get_their_familys_template_unless_one_is_named(overrides, expected):
    entry = dict((key, value) for key, value in dict(model(), **overrides).items() if value is not None)
    assert fastchat_model_errors([entry], 1, 'cuda') == []
    assert fastchat_workers([entry], 1, 'cuda')[0]['conv_template'] == expected


def test_families_have_one_home():
    """The collection reads the extension's families.py; no second list exists to drift (issue 13)."""
    extension = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'image', 'files')
    sys.path.insert(0, extension)
    try:
        from slm_fastchat import families  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.remove(extension)
    assert FAMILIES == tuple(families.FAMILIES)
    assert 'gemma-2' in FAMILIES and 'phi-4' in FAMILIES
    workers = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'plugins', 'module_utils', '_workers.py')
    with open(workers) as handle:
        assert "'gemma-2'" not in handle.read()


def test_a_cpu_vllm_worker_always_has_a_bounded_kv_cache():
    """Without VLLM_CPU_KVCACHE_SPACE, vLLM 0.32 on CPU grew to 22 GB of a 24 GB host under load."""
    [worker] = fastchat_workers([model()], 0, 'cpu')
    assert worker['environment'] == {'VLLM_CPU_KVCACHE_SPACE': '4'}
    [hf] = fastchat_workers([model(backend='hf')], 0, 'cpu')
    assert hf['environment'] == {}


def test_vllm_is_the_default_backend_with_eager_mode_on_cpu():
    cpu = fastchat_workers([model(vllm={'kv_cache_space': 1, 'max_num_seqs': 32})], 0, 'cpu')
    assert [(w['backend'], w['engine_args'], w['environment'], w['concurrency']) for w in cpu] == [
        ('vllm', ['--max-num-seqs=32', '--enforce-eager'], {'VLLM_CPU_KVCACHE_SPACE': '1'}, 32)]
    options = {'gpu_memory_utilization': 0.9, 'dtype': 'bfloat16'}
    cuda = fastchat_workers([model(workers=2, gpus_per_worker=2, vllm=options)], 4, 'cuda')
    assert [(w['device_ids'], w['engine_args'], w['concurrency']) for w in cuda] == [
        (['0', '1'], ['--dtype=bfloat16', '--gpu-memory-utilization=0.9', '--tensor-parallel-size=2'], 256),
        (['2', '3'], ['--dtype=bfloat16', '--gpu-memory-utilization=0.9', '--tensor-parallel-size=2'], 256)]


def test_hf_workers_take_no_engine_arguments():
    workers = fastchat_workers([model(backend='hf')], 1, 'cuda')
    assert [(w['backend'], w['engine_args'], w['concurrency']) for w in workers] == [('hf', [], None)]


@pytest.mark.parametrize('entry, gpus, device, expected', [
    (model(gpus_per_worker=4, vllm={'tensor_parallel_size': 3}), 4, 'cuda',
     'fastchat_models[0] (phi-4).vllm.tensor_parallel_size 3 does not divide gpus_per_worker 4'),
    (model(vllm={'gpu_memory_utilization': 0.9}), 0, 'cpu',
     'fastchat_models[0] (phi-4).vllm.gpu_memory_utilization only work on GPUs but fastchat_device is cpu'),
    (model(vllm={'quantization': 'awq', 'tensor_parallel_size': 2}, gpus_per_worker=2), 0, 'cpu',
     'fastchat_models[0] (phi-4).vllm.quantization, tensor_parallel_size only work on GPUs'),
    (model(vllm={'kv_cache_space': 2}), 1, 'cuda', 'fastchat_models[0] (phi-4).vllm.kv_cache_space is for CPU hosts'),
    (model(max_gpu_memory='22GiB'), 1, 'cuda', 'fastchat_models[0] (phi-4).max_gpu_memory is an option of the hf'),
    (model(backend='hf', vllm={'dtype': 'auto'}), 1, 'cuda', 'fastchat_models[0] (phi-4).vllm is set but backend is hf'),
    (model(backend='tgi'), 1, 'cuda', "fastchat_models[0] (phi-4).backend 'tgi' must be one of vllm, hf"),
    (model(vllm={'gpu_memory_utilization': 1.5}), 1, 'cuda', 'vllm.gpu_memory_utilization 1.5 must be a fraction'),
    (model(vllm={'max_num_seqs': 0}), 1, 'cuda', 'vllm.max_num_seqs 0 must be the most sequences'),
    (model(vllm={'dtype': 'fp4'}), 1, 'cuda', "vllm.dtype 'fp4' must be one of auto, float16, bfloat16, float32"),
    (model(vllm={'swap_space': 4}), 1, 'cuda', 'vllm: unknown keys swap_space'),
    (model(vllm=['--dtype=auto']), 1, 'cuda', 'vllm must be a dict of vLLM options'),
])
def test_vllm_combinations_that_cannot_work_are_refused(entry, gpus, device, expected):
    errors = fastchat_model_errors([entry], gpus, device)
    assert any(expected in error for error in errors), errors


def test_backends_of_the_enabled_entries():
    from ansible_collections.slm.fastchat.plugins.filter.fastchat_workers import fastchat_backends
    assert fastchat_backends([model('a', backend='hf'), model('b'), model('c', backend='hf', enabled=False)]) == [
        'hf', 'vllm']
    assert fastchat_backends([model('a', backend='hf')]) == ['hf']
    assert fastchat_backends([]) == []
