"""Host tools: teaching the model new classes (a head on YAMNet embeddings)."""
