"""Host tools: the demo and the benchmarks that run daemons (on the live rig, tools/rig/)."""
