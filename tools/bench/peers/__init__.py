"""Side-by-side benchmark of the kit against other libraries' audio classifiers (`python -m tools.bench.peers`).

Run from the repository root (`make bench`). The peer scripts (peer_*.py, write_metadata.py) run inside the
peers' own virtual environments and import nothing from the kit.
"""
