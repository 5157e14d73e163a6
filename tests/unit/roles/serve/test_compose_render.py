# -*- coding: utf-8 -*-
# Copyright (c) slm.fastchat contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/prod renders to the seed's hand-written deployment, with its safety changes."""

import json
import os
import subprocess

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..', '..', '..'))


def render(tmp_path, inventory, *extra):
    argv = ['ansible-playbook', '-i', os.path.join(REPO, inventory), os.path.join(HERE, 'render.yml'),
            '-e', 'render_dir=%s' % tmp_path, '-e', 'fastchat_image_ref=slm-fastchat:test',
            '-e', '{"vault_fastchat_api_keys": ["sk-render-test-key-0123456789"]}',
            '-e', 'ansible_python_interpreter=python3', '-e', 'fastchat_ca_create=true'] + list(extra)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                            env=dict(os.environ, ANSIBLE_NOCOLOR='1'))
    return result


@pytest.fixture(scope='module')
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp('prod')
    result = render(out, 'inventories/prod')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def prod(rendered):
    with open(rendered / 'gpu-01-compose.yaml') as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope='module')
def prod_nginx(rendered):
    with open(rendered / 'gpu-01-nginx.conf') as handle:
        return handle.read()


@pytest.fixture(scope='module')
def seed():
    with open(os.path.join(REPO, 'tests', 'fixtures', 'seed', 'docker-compose.yml')) as handle:
        return yaml.safe_load(handle)


def flags(command):
    """['--a=b', '--c', 'd'] -> {'--a': 'b', '--c': 'd'} for both styles of argument."""
    out = {}
    args = [arg for arg in command if arg not in ('python', 'python3.9', '-m')]
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith('--') and '=' in arg:
            key, value = arg.split('=', 1)
            out[key] = value
        elif arg.startswith('--') and index + 1 < len(args) and not args[index + 1].startswith('--'):
            out[arg] = args[index + 1]
            index += 1
        else:
            out[arg] = True
        index += 1
    return out


def workers(compose):
    return [service for name, service in sorted(compose['services'].items()) if 'model_worker' in ' '.join(
        service.get('entrypoint') or service.get('command'))]


def test_workers_run_the_extensions_entry_point(prod):
    assert all(flags(worker['command']).get('slm_fastchat.model_worker') for worker in workers(prod))


def test_same_services_as_the_seed(prod, seed):
    assert len(prod['services']) == len(seed['services']) == 4
    assert len(workers(prod)) == len(workers(seed)) == 2


def test_controller_uses_lottery_dispatch(prod, seed):
    ours = flags(prod['services']['fastchat-controller']['command'])
    theirs = flags(seed['services']['fastchat-controller']['entrypoint'])
    assert ours['--dispatch-method'] == theirs['--dispatch-method'] == 'lottery'
    assert ours['fastchat.serve.controller'] and theirs['fastchat.serve.controller']


def test_workers_get_the_seeds_gpus_and_flags(prod, seed):
    for ours, theirs in zip(workers(prod), workers(seed)):
        ours_devices = ours['deploy']['resources']['reservations']['devices']
        theirs_devices = theirs['deploy']['resources']['reservations']['devices']
        assert ours_devices == theirs_devices
        ours_flags, theirs_flags = flags(ours['command']), flags(theirs['entrypoint'])
        for flag in ('--model-names', '--device', '--num-gpus', '--max-gpu-memory'):
            assert ours_flags[flag] == theirs_flags[flag], flag
        # What the seed left to FastChat's guesses, now explicit:
        assert ours_flags['--conv-template'] == 'phi-4'
        assert ours_flags['--stream-interval'] == '1'
        assert ours['volumes'] == ['/srv/fastchat/models/phi-4:/models/phi-4:ro']


def test_only_the_api_server_publishes_a_port_and_only_on_loopback(prod, seed):
    published = {name: service['ports'] for name, service in prod['services'].items() if 'ports' in service}
    assert published == {'fastchat-api-server': ['127.0.0.1:8000:8000']}
    assert 'ports' in seed['services']['fastchat-controller']  # the seed published everything
    assert prod['networks']['backend'] == {'internal': True}


def test_api_keys_come_from_a_secret_file(prod):
    api = prod['services']['fastchat-api-server']
    assert api['secrets'] == ['api_keys']
    assert api['environment']['SLM_FASTCHAT_API_KEYS_FILE'] == '/run/secrets/api_keys'
    assert not any('sk-' in arg for arg in api['command'])
    assert prod['secrets'] == {'api_keys': {'file': './api_keys'}}
    others = [name for name, service in prod['services'].items()
              if name != 'fastchat-api-server' and 'SLM_FASTCHAT_API_KEYS_FILE' in service['environment']]
    assert others == []


def test_heartbeats_are_shortened_and_logs_rotated(prod):
    for service in prod['services'].values():
        assert int(service['environment']['FASTCHAT_CONTROLLER_HEART_BEAT_EXPIRATION']) <= 30
        assert service['logging']['options'] == {'max-size': '50m', 'max-file': '5'}
        assert 'test' in service['healthcheck']
        assert service['restart'] == 'unless-stopped'


@pytest.mark.parametrize('extra, message', [
    (['-e', 'fastchat_gpu_count=3'], 'needs 4 GPUs (phi-4: 2 x 2) but the host has 3'),
    (['-e', 'serve_dispatch_method=round_robin'], 'serve_dispatch_method must be one of'),
    (['-e', '{"fastchat_models": [{"name": "a", "repo": "o/a", "revision": "%s", "family": "phi-4", '
            '"device_ids": [[0]]}, {"name": "b", "repo": "o/b", "revision": "%s", "family": "phi-4", '
            '"device_ids": [[0]]}]}' % ('a' * 40, 'b' * 40)], 'both want GPU 0'),
])
def test_bad_placements_fail_before_rendering(tmp_path, extra, message):
    result = render(tmp_path, 'inventories/prod', *extra)
    output = ' '.join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert message in output, output[-2000:]
    assert not (tmp_path / 'gpu-01-compose.yaml').exists()


def test_a_changed_template_changes_the_api_servers_configuration(prod, tmp_path):
    """Compose recreates a service whose configuration changed: the API server must, as it caches templates."""
    label = 'org.slm-fastchat.conv-templates'
    assert prod['services']['fastchat-api-server']['labels'][label] == 'phi-4=phi-4'
    models = ('{"fastchat_models": [{"name": "phi-4", "repo": "microsoft/phi-4", "revision": "%s", '
              '"family": "phi-4", "conv_template": "chatml", "workers": 2, "gpus_per_worker": 2}]}' % ('a' * 40))
    result = render(tmp_path, 'inventories/prod', '-e', models)
    assert result.returncode == 0, result.stdout[-3000:]
    with open(tmp_path / 'gpu-01-compose.yaml') as handle:
        changed = yaml.safe_load(handle)
    assert changed['services']['fastchat-api-server']['labels'][label] == 'phi-4=chatml'
    assert all(flags(worker['command'])['--conv-template'] == 'chatml' for worker in workers(changed))


def test_the_proxy_terminates_tls_and_streams_to_the_api_server(prod_nginx):
    """The seed published plain HTTP on 8000; prod puts nginx with TLS in front of it."""
    lines = [line.strip() for line in prod_nginx.splitlines()]
    assert 'server 127.0.0.1:8000;' in lines
    assert 'listen 443 ssl default_server;' in lines
    assert 'ssl_protocols TLSv1.2 TLSv1.3;' in lines
    assert 'server_name llm.example.com;' in lines
    assert 'return 301 https://$host$request_uri;' in lines
    for directive in ('proxy_buffering off;', 'proxy_http_version 1.1;', 'proxy_set_header Connection "";',
                      'proxy_read_timeout 3600s;', 'client_max_body_size 10m;'):
        assert directive in lines, directive
    assert any(line.startswith('add_header Strict-Transport-Security') for line in lines)


def test_vllm_workers_run_the_vllm_image_with_their_engine_options(tmp_path):
    models = json.dumps({'fastchat_device': 'cpu', 'fastchat_vllm_image_ref': 'slm-fastchat-vllm:test', 'fastchat_models': [
        {'name': 'small', 'source': 'local', 'path': '/srv/x', 'family': 'chatml',
         'vllm': {'kv_cache_space': 2, 'max_num_seqs': 8, 'dtype': 'float32'}},
        {'name': 'seed', 'source': 'local', 'path': '/srv/y', 'family': 'chatml', 'backend': 'hf'}]})
    result = render(tmp_path, 'inventories/prod', '-e', models)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / 'gpu-01-compose.yaml') as handle:
        services = yaml.safe_load(handle)['services']
    vllm, hf = services['fastchat-worker-small-1'], services['fastchat-worker-seed-1']
    assert vllm['image'] == 'slm-fastchat-vllm:test' and hf['image'] == 'slm-fastchat:test'
    assert vllm['command'][:3] == ['python', '-m', 'slm_fastchat.vllm_worker']
    assert flags(vllm['command'])['--limit-worker-concurrency'] == '8'
    assert {'--max-num-seqs', '--dtype', '--enforce-eager'} <= set(flags(vllm['command']))
    assert '--device' not in flags(vllm['command'])
    assert vllm['environment']['VLLM_CPU_KVCACHE_SPACE'] == '2'
    assert 'VLLM_CPU_KVCACHE_SPACE' not in hf['environment']
    assert hf['command'][:3] == ['python', '-m', 'slm_fastchat.model_worker']


def test_a_cuda_only_vllm_option_on_a_cpu_host_fails_naming_the_entry(tmp_path):
    models = json.dumps({'fastchat_device': 'cpu', 'fastchat_models': [
        {'name': 'small', 'source': 'local', 'path': '/srv/x', 'family': 'chatml',
         'vllm': {'gpu_memory_utilization': 0.9}}]})
    result = render(tmp_path, 'inventories/prod', '-e', models)
    assert result.returncode != 0
    assert 'fastchat_models[0] (small).vllm.gpu_memory_utilization only work on GPUs' in result.stdout


@pytest.fixture(scope='module')
def fleet(tmp_path_factory):
    """inventories/fleet rendered: head-01 (no GPU), gpu-01 and gpu-02 (4 GPUs each, 192.0.2.10-12)."""
    out = tmp_path_factory.mktemp('fleet')
    models = '{"fastchat_models": [{"name": "phi-4", "repo": "microsoft/phi-4", "family": "phi-4", ' \
             '"revision": "0123456789abcdef0123456789abcdef01234567", "workers": 2, "gpus_per_worker": 2}]}'
    result = render(out, 'inventories/fleet', '-e', models, '-e', 'ansible_connection=local')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rendered = {}
    for host in ('head-01', 'gpu-01', 'gpu-02'):
        with open(out / ('%s-compose.yaml' % host)) as handle:
            rendered[host] = yaml.safe_load(handle)
    return rendered


def test_fleet_head_runs_controller_and_api_server_only(fleet):
    head = fleet['head-01']['services']
    assert sorted(head) == ['fastchat-api-server', 'fastchat-controller']
    # Worker hosts reach the controller on the head's private address only.
    assert head['fastchat-controller']['ports'] == ['192.0.2.10:21001:21001']
    assert head['fastchat-api-server']['ports'] == ['127.0.0.1:8000:8000']


@pytest.mark.parametrize('host, address', [('gpu-01', '192.0.2.11'), ('gpu-02', '192.0.2.12')])
def test_fleet_workers_publish_and_register_on_their_private_address(fleet, host, address):
    services = fleet[host]['services']
    assert sorted(services) == ['fastchat-worker-phi-4-1', 'fastchat-worker-phi-4-2']
    for number, name in enumerate(sorted(services)):
        service = services[name]
        options = flags(service['command'])
        port = 21002 + number
        assert options['--worker-address'] == 'http://%s:%d' % (address, port)
        assert options['--controller-address'] == 'http://192.0.2.10:21001'
        assert service['ports'] == ['%s:%d:21002' % (address, port)]
        assert 'depends_on' not in service
        # Drained on SIGTERM: the grace period bounds the running requests' wait.
        assert service['stop_grace_period'] == '120s'
    assert 'secrets' not in fleet[host]
