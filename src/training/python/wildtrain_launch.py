"""Script entry for `python -m paddle.distributed.launch`, which runs a file, not a module; the same
protocol as `python -m wildtrain` (wildtrain/protocol.py)."""
import sys

from wildtrain.__main__ import main
from wildtrain.protocol import run_cli

if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
