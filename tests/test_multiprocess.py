"""Multi-host training on JAX's multi-controller runtime, with two real local processes.

Each child (tests/multiprocess_child.py: main.py or vidjax.evaluate, unchanged) joins a run
coordinated on 127.0.0.1 and has 2 fake CPU devices; cross-process collectives go through
gloo, jax 0.10.2's default CPU implementation. This pytest process has 4 fake devices
(conftest.py) and computes the one-process references.
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from configs import npair
from vidjax import checkpointing, multihost, parallel, step, train
from vidjax.evaluate import datasets, encoders, export

REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / 'tests' / 'multiprocess_child.py'
SMOKE = ['--config=configs/npair.py:smoke']
TIMEOUT = 240
INTERLEAVED = {'INTERLEAVE_MESH': '1'}  # See multiprocess_child.py.


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(program, flags, env_for=lambda process: {}):
  """Starts the two processes of one run; returns their Popen objects."""
  port = _free_port()
  processes = []
  for process in range(2):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES='2', **env_for(process))
    processes.append(subprocess.Popen(
        [sys.executable, str(CHILD), program, *flags, f'--coordinator_address=127.0.0.1:{port}',
         '--num_processes=2', f'--process_id={process}'],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  return processes


def _finish(processes, timeout=TIMEOUT):
  """Waits for both processes: [(returncode, stdout, stderr)]; kills them on a timeout.

  Their pipes are drained at the same time: one blocked on a full pipe would stall the
  other in a collective."""
  try:
    with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
      outputs = list(pool.map(lambda p: p.communicate(timeout=timeout), processes))
    return [(p.returncode, *output) for p, output in zip(processes, outputs)]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.communicate()


def _run(program, flags, env=None):
  results = _finish(_start(program, flags, lambda process: env or {}))
  for process, (code, _, stderr) in enumerate(results):
    assert code == 0, f'process {process}: {stderr[-3000:]}'
  return results


def _printed(stdout) -> str:
  """What the program printed, without gloo's connection notices ('[Gloo] Rank 0 is connected
  to 1 peer ranks. Expected number of connected peer ranks is : 1'): its threads write them
  concurrently, piece by piece, so pieces of several notices can share a line in any order.
  Whitespace is dropped too, so the answer is '' when nothing else was printed."""
  pieces = r'\[Gloo\]Rank|isconnectedto|peerranks\.|Expectednumberofconnectedpeerranksis:|\d+'
  return re.sub(pieces, '', re.sub(r'\s', '', stdout))


def _metrics(workdir):
  return [json.loads(line) for line in open(workdir / 'metrics.jsonl')]


def _assert_states_close(state, reference, initial) -> float:
  """Asserts `state` equals `reference` to float tolerance; returns the largest parameter
  difference.

  A different device layout sums the batch in another order, and six steps of LARS on BN
  parameters amplify those rounding differences: 1 process with 1, 2 or 4 devices ends up
  to 7e-4 apart, up to 1% of how far training moved a small BN leaf (2 processes x 2
  devices vs 1 process x 2 devices: 2e-6). Wrong data or double-counted gradients move them
  by tens of percent, so each leaf must match to 3% of its update (BN statistics: of their
  size).
  """
  state, reference, initial = jax.device_get((state, reference, initial))
  norm = lambda x: float(np.linalg.norm(x))
  for got, want, start in zip(*(jax.tree.leaves(s['params']) for s in (state, reference,
                                                                         initial))):
    assert norm(got - want) <= 0.03 * norm(want - start) + 1e-6
  for got, want in zip(*(jax.tree.leaves(s['batch_stats']) for s in (state, reference))):
    assert norm(got - want) <= 0.03 * norm(want) + 1e-6
  return max(float(np.max(np.abs(a - b))) for a, b in
             zip(jax.tree.leaves(state['params']), jax.tree.leaves(reference['params'])))


def _restore(workdir, step, like):
  checkpoints = checkpointing.Checkpoints(workdir, 3)
  try:
    return checkpoints.restore(step, like)
  finally:
    checkpoints.close()


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """(workdir, initial state, final state) of the :smoke run in this one process on 4
  devices."""
  workdir = tmp_path_factory.mktemp('one_process')
  config = npair.get_config('smoke')
  initial = jax.device_get(step.make_state_and_step(config, parallel.make_mesh())[1])
  return workdir, initial, train.train_and_evaluate(config, str(workdir))


def test_two_processes_train_like_one_process_with_four_devices(reference, tmp_path):
  one_workdir, initial, one_state = reference
  results = _run('main', SMOKE + [f'--workdir={tmp_path}'])

  # The checkpoint the two processes wrote together, restored here on 4 local devices.
  two_state = _restore(tmp_path, 6, one_state)
  max_difference = _assert_states_close(two_state, one_state, initial)
  print(f'max |parameter difference|, 2 processes vs 1: {max_difference:.2e}')
  # Process 0 alone wrote metrics (one record per step) and config.json, and printed.
  records, expected = _metrics(tmp_path), _metrics(one_workdir)
  assert [r['step'] for r in records] == [r['step'] for r in expected]
  for got, want in zip(records, expected):
    if 'loss' in want:  # Cross-process reductions sum in another order; drift compounds.
      np.testing.assert_allclose(got['loss'], want['loss'], rtol=1e-3)
    if 'knn_top1' in want:  # The kNN monitor: each process embedded its rows (100 queries).
      assert abs(got['knn_top1'] - want['knn_top1']) <= 0.011
      np.testing.assert_allclose(got['feature_rank'], want['feature_rank'], rtol=0.01)
    assert got.get('dt_hist') == want.get('dt_hist')  # Offsets counted on both processes.
  assert json.loads((tmp_path / 'config.json').read_text())['method'] == 'npair'
  assert 'step 6/6' in results[0][1] and _printed(results[1][1]) == ''


def test_killed_process_then_restart_resumes_from_the_last_checkpoint(reference, tmp_path):
  _, initial, one_state = reference
  workdir = tmp_path / 'run'
  flags = SMOKE + [f'--workdir={workdir}']
  # Process 1 dies on fetching batch 5, once the step-3 checkpoint is complete; process 0
  # then waits in a collective until the job is torn down, as a scheduler would.
  processes = _start('main', flags, lambda process: {} if process == 0 else {
      'KILL_AT_BATCH': '5', 'KILL_AFTER': str(workdir / 'checkpoints' / '3')})
  try:
    processes[1].wait(timeout=TIMEOUT)
  finally:
    processes[0].send_signal(signal.SIGKILL)
    killed = _finish(processes)
  assert processes[1].returncode == -signal.SIGKILL, killed[1][2][-3000:]
  saved = sorted(p for p in os.listdir(workdir / 'checkpoints') if p.isdigit())
  assert saved == ['3'], (saved, killed[0][2][-3000:])

  # The same run on a different process layout: this process, 4 devices.
  shutil.copytree(workdir, tmp_path / 'one_process')
  resumed_here = train.train_and_evaluate(npair.get_config('smoke'),
                                          str(tmp_path / 'one_process'))

  # Both processes restarted with the same command, on yet another layout: their devices
  # interleaved in the mesh, so each reads two separate blocks of samples of every batch.
  results = _run('main', flags, INTERLEAVED)
  assert f"Resumed from {workdir / 'checkpoints'} at step 3" in results[0][1], results[0][2]
  assert [r['step'] for r in _metrics(workdir) if 'loss' in r][-3:] == [4, 5, 6]
  _assert_states_close(_restore(workdir, 6, one_state), one_state, initial)
  _assert_states_close(resumed_here, one_state, initial)


def test_ctrl_c_on_one_process_stops_both_at_the_same_step_with_a_checkpoint(tmp_path):
  flags = SMOKE + [f'--workdir={tmp_path}', '--config.total_steps=200',
                   '--config.eval_every=1000', '--config.checkpoint_every=1000']
  processes = _start('main', flags)
  try:
    for line in processes[0].stdout:  # Interrupt once training is under way.
      if line.startswith('step 2/'):
        break
    processes[1].send_signal(signal.SIGINT)
  finally:
    results = _finish(processes)
  for process, (code, _, stderr) in enumerate(results):
    assert code == 0, f'process {process}: {stderr[-3000:]}'
  saved = [int(p) for p in os.listdir(tmp_path / 'checkpoints') if p.isdigit()]
  assert len(saved) == 1 and 2 <= saved[0] < 200
  for _, _, stderr in results:  # JAX's preemption sync picked one step for both.
    assert f'Interrupted: saved a checkpoint at step {saved[0]} ' in stderr


def test_two_process_evaluation_embeds_like_one(reference, tmp_path):
  one_workdir = reference[0]
  shutil.copytree(one_workdir, tmp_path / 'run')  # A checkpoint written by one process.
  workdir = tmp_path / 'run'
  # Interleaved devices: each process feeds two separate blocks of rows of every batch.
  results = _run('evaluate', [f'--workdir={workdir}', '--init=trained', '--shots=1,5',
                              '--draws=2', '--linear_runs=1', '--grid_queries=2'], INTERLEAVED)
  assert '| trained |' in results[0][1] and _printed(results[1][1]) == ''
  saved = json.loads((workdir / 'eval' / 'trained' / 'metrics.json').read_text())
  assert saved['num_support'] == 100 and 0 <= saved['knn_top1'] <= 1
  embedded = np.load(workdir / 'eval' / 'trained' / 'embeddings' / 'support.npy')

  config = npair.get_config('smoke')
  support = datasets.open_labelled('synthetic', 'support', config, '--support')
  encoder, _ = encoders.load_encoder(config, str(one_workdir), 'trained', parallel.make_mesh())
  here = export.export_embeddings(support, encoder, config.image_size, str(tmp_path / 'here'),
                                  'support')
  np.testing.assert_allclose(embedded, here, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('given, message', [
    (dict(process_id=1), '--process_id needs --coordinator_address and --num_processes too'),
    (dict(coordinator_address='h:1', num_processes=2), 'needs --process_id too'),
    (dict(coordinator_address='h:1', num_processes=2, process_id=2),
     '--process_id must be in 0 .. num_processes-1, got 2'),
    (dict(coordinator_address='h', num_processes=2, process_id=0), 'expected host:port'),
    (dict(num_processes=0, detect=True), '--num_processes must be >= 1'),
])
def test_bad_multihost_flags_name_the_flag(given, message):
  with pytest.raises(multihost.FlagError, match=message.replace('.', r'\.')):
    multihost.initialize_args(**given)


def test_multihost_arguments():
  assert multihost.initialize_args() is None  # Single process: JAX is never asked.
  assert multihost.initialize_args(detect=True) == dict(
      coordinator_address=None, num_processes=None, process_id=None)
  assert multihost.initialize_args('h:1', 2, 1) == dict(
      coordinator_address='h:1', num_processes=2, process_id=1)


def test_main_reports_a_bad_flag_combination_in_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, 'main.py', *SMOKE, f'--workdir={tmp_path}', '--process_id=1'],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith('error: --process_id needs')
