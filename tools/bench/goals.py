"""What `make bench` aims for. The tools that measure each figure (peers, daemon-bench, onset) and
`bench-targets`, which reports them together, read them from here."""

TARGETS = {"e2e_default": 1.15, "e2e_off_grid": 1.25, "over_mediapipe": 3.0, "rss_margin_mb": 10.0,
           "cpu_ratio": 1.3, "onset_s": 0.6}
