"""The device-side release manager: `edge-audio release ...` and `python -m edge.app.release ...`.

parser.py the command line; commands.py one function per step; steps.py the install's phases; store.py the
releases on disk (PREFIX/releases, current, state); service.py systemd units and udev rules; calibrate_job.py
`release calibrate` (stop the service, calibrate, start it again). Standard library only: it runs from the wheel
before any venv exists.
"""
