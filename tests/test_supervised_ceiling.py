"""bench/supervised_ceiling.py leaves a workdir that `python -m vidjax.evaluate` measures."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_supervised_encoder_is_evaluated_like_a_run(tmp_path):
  workdir = tmp_path / 'supervised'
  trained = subprocess.run(
      [sys.executable, 'bench/supervised_ceiling.py', '--config=configs/npair.py:smoke',
       f'--workdir={workdir}', '--minutes=0.01', '--per_class=8'],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert trained.returncode == 0, trained.stderr[-2000:]
  assert 'saved:' in trained.stdout
  evaluated = subprocess.run(
      [sys.executable, '-m', 'vidjax.evaluate', f'--workdir={workdir}', '--shots=1',
       '--draws=2'], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  with open(workdir / 'eval' / 'trained' / 'metrics.json') as f:
    metrics = json.load(f)
  assert 0 <= metrics['knn_top1'] <= 1 and 'context_match@8' in metrics
