"""The run directory, the contract between the engine (which writes it) and the report (which reads it).

- :mod:`mmbalance.runs.files` — the files of one run (``metrics.json``, ``history.csv``,
  ``predictions.npz``): their names, their schema and its version, the writer the engine uses and
  the readers the report and the analyses use. It imports neither torch nor the configuration.
- :mod:`mmbalance.runs.matrix` — which runs a ``params.yaml`` configures, where they live, which are
  finished, and where a dataset's summary goes.

Like :mod:`mmbalance.data.store` for the data → engine handoff, this is the one place that knows the
layout: nothing else spells a run file's name or parses one.
"""
