"""The recorder: every device's detections, clips, status and metrics from the broker into one store, and a
read-only fleet view in the browser (edge-audio recorder)."""
