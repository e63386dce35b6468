"""Script entry for `python -m paddle.distributed.launch`, which runs a file, not a module."""
import sys

from wildtrain.__main__ import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
