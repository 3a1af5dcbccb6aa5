"""The on-device benchmark: measuring (measure.py), the machine it ran on (env.py), the result schema,
comparisons and reference profiles (report.py, profiles/). The command line is edge/app/bench.py."""
