"""launch/ssh_multinode.sh: the ssh argv per host, and each host's remote line executed
locally under its own fake home, checking the JAX_* contract and main.py's arguments."""

import pytest
from conftest import LAUNCH_DIR

SSH_SH = LAUNCH_DIR / 'ssh_multinode.sh'


@pytest.fixture
def hosts_file(tmp_path):
  path = tmp_path / 'my hosts.txt'
  path.write_text('# coordinator first\nme@node-a   # process 0\n\nnode-b\nnode-c\n')
  return path


def test_start_and_stop_each_host(
  runner, remote, hosts_file, tmp_path, make_stub_python, killer, is_gone
):
  lines = runner.dry_run(
    SSH_SH,
    'start',
    '--hosts',
    hosts_file,
    '--workdir=/shared/my runs',
    '--data-dir',
    '/shared/tfds',
    '--port=4321',
    '--',
    '--config.x=1',
  )
  assert [argv[:4] for argv in lines] == [
    ['ssh', '-o', 'BatchMode=yes', host] for host in ['me@node-a', 'node-b', 'node-c']
  ]
  assert all(len(argv) == 5 for argv in lines)
  stops = runner.dry_run(SSH_SH, 'stop', '--hosts', hosts_file)
  assert [argv[3] for argv in stops] == ['me@node-a', 'node-b', 'node-c']

  for i, (argv, stop) in enumerate(zip(lines, stops)):
    home = tmp_path / f'home{i}'
    (home / 'vit_jax_stems').mkdir(parents=True)
    stub = make_stub_python(
      home / 'vit_jax_stems' / '.venv' / 'bin' / 'python', record_dir=tmp_path / f'records{i}'
    )
    proc = remote(argv[4], home, RECORD_DIR=stub.record_dir, STUB_SLEEP=60)
    assert proc.returncode == 0, proc.stderr
    [rec] = stub.records(expected=1)
    killer(rec['pgid'])
    assert rec['env'] == {
      'JAX_COORDINATOR_ADDRESS': 'node-a:4321',
      'JAX_NUM_PROCESSES': '3',
      'JAX_PROCESS_ID': str(i),
    }
    assert rec['argv'] == [
      'main.py',
      '--config=configs/vitc.py:size=4gf',
      '--workdir=/shared/my runs',
      '--config.data.data_dir=/shared/tfds',
      '--mode=train',
      '--config.x=1',
    ]
    assert rec['cwd'] == str(home / 'vit_jax_stems')
    proc = remote(stop[4], home)
    assert proc.returncode == 0 and 'stopped main.py' in proc.stdout, proc
    assert is_gone(rec['pid'])


@pytest.mark.parametrize(
  'args, message',
  [
    (
      ['start', '--hosts=HOSTS', '--workdir=w', '--data-dir=d', '--bogus'],
      "unknown flag '--bogus'",
    ),
    (['launch', '--hosts=HOSTS'], "unknown subcommand 'launch'"),
    (['start', '--workdir=w', '--data-dir=d'], '--hosts FILE is required'),
    (['start', '--hosts=/nonexistent', '--workdir=w', '--data-dir=d'], 'does not exist'),
    (['start', '--hosts=HOSTS', '--data-dir=d'], '--workdir is required'),
    (['start', '--hosts=HOSTS', '--workdir=w', '--data-dir=d', '--port=x'], '--port must be'),
    (['stop', '--hosts=HOSTS', '--', '--x'], "only allowed with 'start'"),
    (
      ['start', '--hosts=HOSTS', '--workdir=w', '--data-dir=d', '--python=/usr/bin/python3'],
      'must be relative to the remote home',
    ),
  ],
)
def test_refusals(runner, hosts_file, args, message):
  args = [a.replace('HOSTS', str(hosts_file)) for a in args]
  proc = runner.run(SSH_SH, *args)
  assert proc.returncode == 2 and message in proc.stderr, proc.stderr
  assert proc.stdout == ''


def test_bad_host_names_are_refused(runner, tmp_path):
  hosts = tmp_path / 'hosts'
  hosts.write_text('node-a\n-oProxyCommand=evil\n')
  proc = runner.run(SSH_SH, 'stop', '--hosts', hosts)
  assert proc.returncode == 2 and 'is not a host name' in proc.stderr
  hosts.write_text('# nothing\n\n')
  proc = runner.run(SSH_SH, 'stop', '--hosts', hosts)
  assert proc.returncode == 2 and 'lists no host' in proc.stderr
