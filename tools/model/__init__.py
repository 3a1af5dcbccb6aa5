"""Host tools: building, checking and compiling the int8 YAMNet."""
