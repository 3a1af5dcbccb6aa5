"""edge-audio: continuous YAMNet audio event classification on Coral Edge TPU and Raspberry Pi boards.

Layers, imports pointing one way:
  core      framing, frontend, resample, wav, tflite_file, labels, bundle  (NumPy + stdlib)
  adapters  runtime (TFLite interpreters), edgetpu (libedgetpu / pycoral)
  apps      classifier, pipeline, cli
"""

__version__ = "0.1.0"
