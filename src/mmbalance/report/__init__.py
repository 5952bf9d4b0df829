"""Aggregation over seeds, tables and figures."""
