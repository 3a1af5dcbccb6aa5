"""Host tools: accuracy, agreement and speed of model paths on labelled recordings."""
