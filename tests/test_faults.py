"""Faults a user meets: a second writer, a full disk, damaged files, a killed writer. Each ends
in one line naming the folder or file, and nothing written before is lost.

A full disk is injected (the failing call raises what the OS or the library raises when the
disk is full), so these run on every machine; test_a_real_full_disk adds a 1.5 MB tmpfs where
the machine lets the test mount one.
"""
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import faiss
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from configs import npair
from vidjax import atomic, checkpointing, disk_space, prepare, train, writer_lock
from vidjax.data.sources import arrayrecord
from vidjax.errors import ConfigError
from vidjax.evaluate import protocol
from vidjax.index import command, integrity
from vidjax.labels import export
from vidjax.labels.store import LabelStore
from vidjax.search import corpus
from vidjax.serve.app import create_app
from video_clips import write_clip

REPO = Path(__file__).resolve().parents[1]
FULL = "RESOURCE_EXHAUSTED: Failed writing: No space left on device [os_error_code='28']"


def _files(root) -> dict:
  """{relative path: bytes} of every file under root (the lock file aside)."""
  root = Path(root)
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
          if p.is_file() and p.name != writer_lock.LOCK_FILE}


def _one_line(error) -> str:
  text = str(error.value)
  assert '\n' not in text, text
  return text


def _config(total_steps=6, checkpoint_every=2):
  config = npair.get_config('smoke')
  config.update(total_steps=total_steps, checkpoint_every=checkpoint_every, eval_every=100)
  return config


def _params(state):
  return jax.device_get(state['params'])


def _loss_steps(workdir):
  return [json.loads(line)['step'] for line in open(Path(workdir) / 'metrics.jsonl')
          if 'loss' in json.loads(line)]


# One writer per folder.

def test_a_second_training_stops_before_touching_the_workdir(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'metrics.jsonl').write_text('{"step": 1, "loss": 2.0}\n')
  with writer_lock.hold(str(workdir), '--workdir'):
    with pytest.raises(writer_lock.FolderBusy) as error:
      train.train_and_evaluate(_config(), str(workdir))
  assert f'--workdir={workdir}: another vidjax process is writing there (pid {os.getpid()}' in (
      _one_line(error))
  assert _files(workdir) == {'metrics.jsonl': b'{"step": 1, "loss": 2.0}\n'}


def test_a_killed_writer_leaves_no_lock(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time\nfrom vidjax import writer_lock\n'
       'with writer_lock.hold(sys.argv[1], "--output"):\n  print("locked", flush=True)\n'
       '  time.sleep(600)\n', str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(writer_lock.FolderBusy, match=rf'pid {holder.pid}: python\S* -c'):
      with writer_lock.hold(str(tmp_path), '--output'):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with writer_lock.hold(str(tmp_path), '--output'):  # The OS released it with the process.
    pass


def test_every_writer_takes_the_lock(smoke_run, tmp_path):
  clips = tmp_path / 'clips'
  clips.mkdir()
  write_clip(clips / 'a.mp4', 20, 64, 48, 10)
  prepared = tmp_path / 'prepared'
  with writer_lock.hold(str(prepared), '--output'):
    with pytest.raises(writer_lock.FolderBusy, match='--output=.*prepared: another'):
      prepare.prepare(str(clips), str(prepared))
  assert _files(prepared) == {}
  index = tmp_path / 'index'
  with writer_lock.hold(str(index), '--output', beside=True):
    with pytest.raises(writer_lock.FolderBusy, match='--output=.*index: another'):
      command.run(command.arguments(workdir=smoke_run, output=str(index), corpus='synthetic',
                                    max_videos=1))
  assert not index.exists() and not Path(f'{index}.partial').exists()
  eval_dir = Path(smoke_run) / 'eval'
  options = _eval_options(smoke_run)
  with writer_lock.hold(str(eval_dir), '--workdir'):
    with pytest.raises(SystemExit, match='eval: another vidjax process is writing there'):
      protocol.run(options)


# A full disk.

def _full_disk_at(step_number):
  real_save = ocp.CheckpointManager.save

  def save(manager, step, *args, **kwargs):
    if step == step_number:  # What Orbax leaves behind and raises when tensorstore fails.
      os.makedirs(Path(manager.directory) / f'{step}.orbax-checkpoint-tmp-1733000000')
      raise ValueError(f'Error writing "params.kernel" in OCDBT database: {FULL}')
    return real_save(manager, step, *args, **kwargs)
  return save


def test_a_full_disk_at_a_checkpoint_keeps_the_last_good_one_and_resumes_exactly(
    monkeypatch, tmp_path):
  config = _config()
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))
  workdir = tmp_path / 'full'
  with monkeypatch.context() as patch:
    patch.setattr(ocp.CheckpointManager, 'save', _full_disk_at(4))
    with pytest.raises(disk_space.OutOfSpace) as error:
      train.train_and_evaluate(config, str(workdir))
  assert _one_line(error).startswith(f'--workdir={workdir}: no space left on the device (')
  assert str(error.value).endswith('the last good checkpoint is step 2; free some space and '
                                   'run the same command again to resume')
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2']  # The temporary one is gone.
  resumed = train.train_and_evaluate(config, str(workdir))  # Space freed: the same command.
  assert _loss_steps(workdir) == [1, 2, 3, 4, 5, 6]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               _params(resumed), _params(straight))


def test_too_little_space_for_a_checkpoint_stops_before_writing_it(monkeypatch, tmp_path):
  real_free = disk_space.free_bytes
  monkeypatch.setattr(disk_space, 'free_bytes', lambda path: 1000 if 'checkpoints' in str(
      path) else real_free(path))
  with pytest.raises(disk_space.OutOfSpace, match=r'\(1000 bytes free, needs about [\d.]+ '
                     r'[KM]B\); no checkpoint was saved'):
    train.train_and_evaluate(_config(), str(tmp_path))
  assert os.listdir(tmp_path / 'checkpoints') == []


def _small_tmpfs():
  mount_point = tempfile.mkdtemp(prefix='vidjax_full_')
  done = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1500k', 'tmpfs', mount_point],
                        capture_output=True, check=False)
  if done.returncode:
    os.rmdir(mount_point)
    pytest.skip('cannot mount a small tmpfs here; the injected full disks above still ran')
  return mount_point


def test_a_real_full_disk_is_one_line_and_resumes_after_space_is_freed():
  mount_point = _small_tmpfs()
  try:
    workdir = os.path.join(mount_point, 'run')
    args = [sys.executable, 'main.py', '--config=configs/npair.py:smoke',
            f'--workdir={workdir}', '--config.total_steps=30', '--config.checkpoint_every=3']
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
    errors = [line for line in done.stderr.splitlines() if not line.startswith('warning:')]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert errors[0].startswith(f'error: --workdir={workdir}: no space left on the device')
    kept = checkpointing.finished_steps(workdir)
    assert kept and f'the last good checkpoint is step {kept[-1]}' in errors[0]
    assert not [p for p in os.listdir(os.path.join(workdir, 'checkpoints')) if 'tmp' in p]
    subprocess.run(['mount', '-o', 'remount,size=20m', mount_point], check=True)
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _loss_steps(workdir)[-1] == 30 and f'at step {kept[-1]}' in done.stdout
  finally:
    subprocess.run(['umount', mount_point], check=False)
    os.rmdir(mount_point)


def _build(workdir, output, **overrides):
  command.run(command.arguments(**{**dict(
      workdir=workdir, output=str(output), corpus='synthetic', fps=1.0, regions=['grid'],
      grid_scales=['0.5'], max_videos=2), **overrides}))


def test_a_full_disk_while_indexing_keeps_the_previous_index(smoke_run, monkeypatch, tmp_path):
  index = tmp_path / 'index'
  _build(smoke_run, index)
  before = _files(index)

  def full_disk(*args):
    raise RuntimeError(f'Error in faiss::write_index: write error: {FULL}')
  with monkeypatch.context() as patch:
    patch.setattr(faiss, 'write_index', full_disk)
    with pytest.raises(disk_space.OutOfSpace) as error:
      _build(smoke_run, index, overwrite=True)
  assert _one_line(error).startswith(f'--output={index}: no space left on the device')
  assert f'{index} is untouched' in str(error.value)
  assert _files(index) == before
  assert not os.path.exists(os.path.join(f'{index}.partial', 'final'))
  _build(smoke_run, index, overwrite=True)  # Space freed: the same command.
  assert _files(index)['index.faiss'] == before['index.faiss']


def test_a_full_disk_while_preparing_keeps_finished_shards(monkeypatch, tmp_path):
  clips = tmp_path / 'clips'
  clips.mkdir()
  for i in range(3):
    write_clip(clips / f'{i}.mp4', 20, 64, 48, 10)
  straight = prepare.prepare(str(clips), str(tmp_path / 'straight'), shard_frames=20)
  output = tmp_path / 'prepared'
  real_add, added = arrayrecord.ShardWriter.add_frame, []

  def add_frame(writer, jpeg):
    if len(added) == 45:
      raise OSError(errno.ENOSPC, 'No space left on device')
    added.append(1)
    real_add(writer, jpeg)
  with monkeypatch.context() as patch:
    patch.setattr(arrayrecord.ShardWriter, 'add_frame', add_frame)
    with pytest.raises(disk_space.OutOfSpace) as error:
      prepare.prepare(str(clips), str(output), shard_frames=20)
  assert _one_line(error).startswith(f'--output={output}: no space left on the device')
  assert 'the 2 videos in finished shards are kept' in str(error.value)
  assert not [n for n in os.listdir(output / arrayrecord.SHARDS) if n.endswith('.tmp')]
  resumed = prepare.prepare(str(clips), str(output), shard_frames=20)
  assert resumed['videos_already_done'] == 2 and resumed['videos_prepared'] == 1
  assert (sorted(v['path'] for _, vs in arrayrecord.finished_shards(str(output)) for v in vs)
          == sorted(v['path'] for _, vs in arrayrecord.finished_shards(str(tmp_path / 'straight'))
                    for v in vs))
  assert straight['frames_kept'] == 60


def _eval_options(workdir):
  return types.SimpleNamespace(
      workdir=str(workdir), init='pixels', checkpoint='', support='synthetic',
      query='synthetic', index='Flat', shots=['5'], draws=3, linear_samples_per_class=0,
      linear_runs=1, grid_queries=4, grid_neighbours=3, batch_size=64, finetune=False)


def test_a_full_disk_while_evaluating_keeps_what_was_written(smoke_run, monkeypatch):
  options = _eval_options(smoke_run)
  protocol.run(options)
  before = _files(Path(smoke_run) / 'eval')

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(atomic, 'save_figure', full_disk)
  with pytest.raises(SystemExit) as error:
    protocol.run(options)
  assert '\n' not in str(error.value.code)
  assert str(error.value.code).startswith(f'error: --workdir={smoke_run}/eval: no space left')
  assert _files(Path(smoke_run) / 'eval') == before


def test_a_full_disk_while_exporting_labels_keeps_the_previous_export(smoke_run, monkeypatch,
                                                                      tmp_path):
  index_folder = tmp_path / 'index'
  _build(smoke_run, index_folder)
  labels = LabelStore(os.path.join(index_folder, 'metadata.sqlite'))
  labels.create_label('cow')
  index = corpus.CorpusIndex(str(index_folder))
  labels.answer(index.row(3), 'cow', 'accept', 'me')
  output = tmp_path / 'labelled'
  export.export(index, labels, str(output))
  before = _files(output)
  labels.answer(index.row(4), 'cow', 'accept', 'me')

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')
  with monkeypatch.context() as patch:
    patch.setattr(Image.Image, 'save', full_disk)
    with pytest.raises(disk_space.OutOfSpace) as error:
      with disk_space.reporting(str(output), '--output', f'{output} is as it was before'):
        export.export(index, labels, str(output), overwrite=True)
  assert _one_line(error).endswith(f'{output} is as it was before')
  assert _files(output) == before and not os.path.exists(f'{output}.partial')
  assert len(export.export(index, labels, str(output), overwrite=True)) == 1
  labels.close()
  index.close()


# Damaged files.

def _corrupt_vectors_table(path):
  """Overwrites the vectors table's root b-tree page, as a bad sector or a stray write would."""
  db = sqlite3.connect(path)
  page_size = db.execute('PRAGMA page_size').fetchone()[0]
  root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'vectors'").fetchone()[0]
  db.close()
  with open(path, 'r+b') as f:
    f.seek((root - 1) * page_size + 8)
    f.write(b'\xff' * 400)


def test_a_damaged_index_is_one_line_naming_the_file_and_the_rebuild(smoke_run, tmp_path):
  good = tmp_path / 'good'
  _build(smoke_run, good)
  cases = {}
  for name in ('truncated', 'corrupted', 'short'):
    cases[name] = tmp_path / name
    shutil.copytree(good, cases[name])
  faiss_path = cases['truncated'] / 'index.faiss'
  os.truncate(faiss_path, os.path.getsize(faiss_path) // 2)
  _corrupt_vectors_table(str(cases['corrupted'] / 'metadata.sqlite'))
  db = sqlite3.connect(cases['short'] / 'metadata.sqlite')
  db.execute('DELETE FROM vectors WHERE id >= 10')
  db.commit()
  db.close()
  for name, damaged, what in (('truncated', 'index.faiss', 'faiss: read error'),
                              ('corrupted', 'metadata.sqlite', 'SQLite'),
                              ('short', 'metadata.sqlite', '10 vector rows, index.json records')):
    with pytest.raises(integrity.DamagedIndex) as error:
      corpus.CorpusIndex(str(cases[name]))
    assert _one_line(error).startswith(f'--index={cases[name]}: {damaged} is damaged ({what}')
    assert f'--output={cases[name]} --overwrite' in str(error.value)
    with pytest.raises(integrity.DamagedIndex):
      create_app(str(cases[name]))  # The server refuses to start.
  done = subprocess.run([sys.executable, '-m', 'vidjax.search', f'--index={cases["truncated"]}',
                         '--frame=synthetic/train/00000@1'], cwd=REPO, capture_output=True,
                        text=True, check=False)
  assert done.returncode == 1 and done.stderr.strip().count('\n') == 0, done.stderr
  assert 'index.faiss is damaged' in done.stderr
  for name in cases:  # The rebuild the line names works.
    _build(smoke_run, cases[name], overwrite=True)
    assert len(corpus.CorpusIndex(str(cases[name]))) == len(corpus.CorpusIndex(str(good)))


def test_a_damaged_checkpoint_names_its_step_and_resumes_earlier_only_when_asked(tmp_path):
  config = _config()
  train.train_and_evaluate(config, str(tmp_path))
  latest = checkpointing.checkpoint_dir(tmp_path) / '6'
  largest = max((p for p in latest.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  os.truncate(largest, 100)
  config.total_steps = 8
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert _one_line(error).startswith(f'--workdir={tmp_path}: checkpoint 6 cannot be restored')
  assert '--config.resume_step=4' in str(error.value)
  assert checkpointing.finished_steps(tmp_path) == [2, 4, 6]  # Nothing fell back silently.
  config.resume_step = 4
  train.train_and_evaluate(config, str(tmp_path))
  assert os.listdir(tmp_path / 'set_aside') == ['6']
  assert checkpointing.finished_steps(tmp_path)[-1] == 8
  assert _loss_steps(tmp_path) == list(range(1, 9))


def test_the_chaos_bench_runs_and_counts(tmp_path):
  """bench/chaos.py, scaled down (one kill per job): it runs, and nothing is lost."""
  out = tmp_path / 'chaos.json'
  # A compilation cache of its own: a kill inside a write leaves a truncated entry, which JAX
  # reads as a miss (and recompiles), so it cannot reach the suite's other tests (conftest).
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'xla_cache'))
  done = subprocess.run([sys.executable, 'bench/chaos.py', '--kills=1', '--train_steps=40',
                         '--videos=4', '--fps=2', f'--out={out}'], cwd=REPO, capture_output=True,
                        text=True, check=False, env=env)
  assert done.returncode == 0, done.stdout + done.stderr
  results = json.loads(out.read_text())
  assert results['serve']['kills'] == 1 and results['serve']['acknowledged'] > 0
  assert [results[job]['lost'] for job in ('train', 'index', 'serve')] == [0, 0, 0]


def test_a_resume_step_without_its_checkpoint_is_one_line(tmp_path):
  config = _config(total_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  config.resume_step = 3
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert _one_line(error) == (f'--config.resume_step=3: no such checkpoint in {tmp_path}/'
                              'checkpoints (it has 2, 4)')
  assert checkpointing.finished_steps(tmp_path) == [2, 4]
