"""Scaling-law analysis: run directories or CSVs of published points in; fits, intervals, figures out.

Reads files only and imports nothing from the training library, so it can be
used on anyone's results.  Entry points: ``analysis.cli`` (``scaling analyze``,
``fit``, ``predict``), ``analysis.load``, and the fitters in
``analysis.kaplan``, ``analysis.chinchilla``, ``analysis.frontier`` and
``analysis.isoflop``.
"""
