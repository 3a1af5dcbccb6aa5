"""The console entry point: process-wide settings for a long-running audio process, then the command line.

NumPy's OpenBLAS starts one worker per core for the front end's small matrix products; between windows those
workers spin, which costs a quarter of a core at real time and stalls the front end when the machine is busy.
One thread is faster for these sizes. It must be set before NumPy is first imported, so it lives here, in the
application's entry, not in the library. An explicit OPENBLAS_NUM_THREADS (0 = one per core) is respected.
"""

import os
import sys


def main() -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .cli import main as cli_main
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
