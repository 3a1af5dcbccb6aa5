"""Host tools (run from the repository root as `python -m tools COMMAND`). May use TensorFlow; the device
runtime in edge/ never imports anything from here."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the repository: the tools run from it, children start in it
