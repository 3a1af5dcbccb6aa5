"""Site calibration: `edge-audio calibrate` (calibrate.py), listening through the daemon's own path (listen.py)
and a plot per label (plot.py)."""
