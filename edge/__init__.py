"""edge-audio: continuous YAMNet audio event classification on Coral Edge TPU and Raspberry Pi boards.

One folder per concern, imports pointing one way (a test enforces it):
  core/     pure: resample, framing, the one window loop, front end, detector, event schema, threshold layers,
            false starts per day from background scores (NumPy + stdlib)
  config    the daemon's frozen TOML tree (builds on core's parameter classes)
  audio/    sources (ALSA, WAV replay, stdin) and the capture thread
  model/    .tflite reader, labels, bundles and the model resolver, interpreter backends, Edge TPU, delegate
            policy, classifier
  sinks/    the Sink interface; MQTT (outbox, topics, Home Assistant discovery); JSON lines
  bench/    on-device measurement, environment, result schema and reference profiles
  app/      the command line and what it runs: classify, run (daemon), calibrate, doctor, monitor, bench
"""

__version__ = "0.1.0"
