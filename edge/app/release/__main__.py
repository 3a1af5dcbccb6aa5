"""`python -m edge.app.release STEP ...`: what deploy and the Ansible playbook run on a device, from the wheel itself
before any venv exists (standard library only)."""

import sys

from .parser import main

sys.exit(main())
