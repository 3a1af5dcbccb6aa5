"""Models: the .tflite reader, labels, bundles (and the one model resolver), interpreter backends, the Edge TPU,
the delegate policy and the classifier that puts them together."""
