"""How wildtrain talks to its caller (src/training/python-env.ts), in one place; a test reads the
constants below and checks that the TypeScript side uses the same ones.

- Exit 0: success. A command with a result prints it on stdout as ONE line, RESULT_PREFIX + JSON
  (other stdout lines, e.g. from libraries, are ignored). `train`'s result is the file
  training.json in --out instead: under paddle.distributed.launch the workers' stdout goes to log
  files, and only rank 0 writes it. The caller checks every result against a schema.
- Exit EXIT_USAGE: an expected failure (bad weights, bad data, bad arguments), with one line
  ERROR_PREFIX + message on stderr, no traceback.
- Exit EXIT_INTERRUPTED: stopped by Ctrl-C / SIGTERM after saving a checkpoint (resume with --resume).
- Anything else: a crash; the caller shows the traceback's tail.
"""
from __future__ import annotations

import json
import sys

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
RESULT_PREFIX = "wildtrain-result "
ERROR_PREFIX = "error: "


def result(value) -> None:
    print(RESULT_PREFIX + json.dumps(value), flush=True)


def run_cli(main, argv: list[str]) -> None:
    """Runs main(argv) under the protocol; both `python -m wildtrain` and the distributed launcher's
    script entry go through here, so every worker reports failures the same way."""
    try:
        code = main(argv)
    except (ValueError, FileNotFoundError) as err:
        print(f"{ERROR_PREFIX}{err}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)
