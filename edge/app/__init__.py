"""Applications: the `edge-audio` command line and what its subcommands run. Nothing below imports from here."""
