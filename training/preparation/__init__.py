"""Dataset preparation: raw pose files of a task's source and target → a prepared task folder.

``tasks`` defines what a task takes (built-in presets and a user's task files), ``catalogue`` what
each dataset calls its classes and files, ``pipeline`` selects, reads and preprocesses the files,
``builder`` assembles the splits and ``task.json``, ``writing`` streams the arrays and replaces the
folder atomically, and ``prepared`` reads a prepared folder back (docs/ARCHITECTURE.md, "Prepared
task folder"). The command line is ``python -m training.prepare``.
"""
