r"""Self-supervised pre-training of a video encoder.

  python main.py --config=configs/simsiam.py --workdir=runs/simsiam
  python main.py --config=configs/npair.py --workdir=runs/npair --config.batch_size=256

Running the same command again resumes from the latest checkpoint in --workdir.
Multi-host (the same command on every host; README "Multi-host training"):

  python main.py --config=configs/simsiam.py --workdir=/shared/run \
      --coordinator_address=host0:1234 --num_processes=N --process_id=$RANK
  python main.py --config=configs/simsiam.py --workdir=/shared/run --distributed  # TPU VM, SLURM
"""
from vidjax.train_command import main, parse_flags, run  # noqa: F401  (tests run main.main)

if __name__ == '__main__':
  run()
