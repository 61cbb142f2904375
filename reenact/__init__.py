"""The ``reenact`` command: the entry point that dispatches to each side's commands.

``training/commands.py`` (dataset, train, export) and ``live/commands.py`` (live,
bench, verify, doctor, devices, puppet) each register their own subcommands. The
commands that span both sides (``demo``) live here, the only package allowed to import
both ``training`` and ``live``.
"""
