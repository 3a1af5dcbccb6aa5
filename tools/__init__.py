"""Host tools (run from the repository root as `python -m tools COMMAND`). May use TensorFlow; the device
runtime in edge/ never imports anything from here."""
