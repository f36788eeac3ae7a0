"""Sweeps: one YAML file describes a whole scaling experiment (README.md, "Sweeps").

``spec`` reads the file as data, ``planner`` expands it into fully resolved run configs
(``shapes`` turns parameter targets into model shapes, ``hyper`` evaluates hyperparameters
as functions of N), ``launcher`` runs them through an executor (``local`` subprocesses or
``slurm`` jobs), and ``status`` reads back what the run directories say.
"""
