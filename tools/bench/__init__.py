"""Host tools: the live rig (broker, subscriber, daemon), the demo, and the benchmarks that run daemons."""
