"""The pure core: audio framing, resampling, the one window loop, the log-mel front end, the detector and the
event schema. NumPy and the standard library only; nothing here touches a device, a file format of a model,
or the network."""
