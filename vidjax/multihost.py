"""Joining a multi-host run: JAX's multi-controller runtime, the same program on every host.

Each process calls `jax.distributed.initialize` before any computation; afterwards
`jax.devices()` lists every device of every host, the mesh spans them all and each process
feeds its own rows of every global batch (vidjax/parallel.py). Single-process runs pass none
of these flags and never call it.

Nothing here may create a device array: once one exists, JAX refuses to join a run.
"""
import re

import jax
from absl import flags

_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'Multi-host: host:port of process 0 (the same on every '
    'process), e.g. host0:1234.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Multi-host: how many processes take part.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'Multi-host: this process, 0 .. num_processes-1.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Multi-host: join a run, detecting what the three flags above '
    'leave out from the cluster (Cloud TPU VM, SLURM, Open MPI).')


class FlagError(ValueError):
  """A multi-host flag combination that cannot work, or a failed join: one line."""


_DETECT_HINT = 'or --distributed to detect them on Cloud TPU, SLURM or Open MPI'


def initialize_args(coordinator_address=None, num_processes=None, process_id=None,
                    detect: bool = False):
  """Keyword arguments for jax.distributed.initialize, or None for a single-process run.

  Raises FlagError naming the flag when the combination cannot work.
  """
  given = {'--coordinator_address': coordinator_address, '--num_processes': num_processes,
           '--process_id': process_id}
  present = [name for name, value in given.items() if value is not None]
  if not present and not detect:
    return None
  missing = [name for name, value in given.items() if value is None]
  if missing and not detect:
    raise FlagError(f'{present[0]} needs {" and ".join(missing)} too ({_DETECT_HINT})')
  if num_processes is not None and num_processes < 1:
    raise FlagError(f'--num_processes must be >= 1, got {num_processes}')
  if process_id is not None and not (
      process_id >= 0 and (num_processes is None or process_id < num_processes)):
    raise FlagError(f'--process_id must be in 0 .. num_processes-1, got {process_id}'
                    + (f' with --num_processes={num_processes}' if num_processes else ''))
  if coordinator_address is not None and not re.fullmatch(r'\S+:\d+', coordinator_address):
    raise FlagError(f'--coordinator_address={coordinator_address}: expected host:port, '
                    'e.g. host0:1234')
  return {'coordinator_address': coordinator_address, 'num_processes': num_processes,
          'process_id': process_id}


def initialize_from_flags():
  """Joins the multi-host run the flags describe (if any); before any JAX computation."""
  args = initialize_args(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                         _DISTRIBUTED.value)
  if args is None:
    return
  try:
    jax.distributed.initialize(**args)
  except ValueError as e:  # JAX's auto-detection found no cluster to fill in the gaps.
    raise FlagError(f'--distributed: {e} No cluster was detected (Cloud TPU VM, SLURM, '
                    'Open MPI); give --coordinator_address, --num_processes and '
                    '--process_id') from None
  except RuntimeError as e:  # Timed out or refused while connecting to the coordinator.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise FlagError(f'could not join the multi-host run at --coordinator_address='
                    f'{args["coordinator_address"] or "(detected)"}: {first[:200]}') from None
