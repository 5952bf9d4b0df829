"""Aggregation over seeds, tables and figures, from files only.

The report reads the run files (:mod:`mmbalance.runs.files`), the summaries it aggregates from them and a
plain :class:`~mmbalance.report.plan.ReportPlan`; it imports no configuration, registry, model, engine,
method or torch (``tests/test_layers.py``). :mod:`mmbalance.report.build` lists and writes every output;
:func:`mmbalance.pipeline.write_tables` makes the plan from ``params.yaml`` and calls it.
"""
