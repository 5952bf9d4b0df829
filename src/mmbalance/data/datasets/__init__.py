"""Datasets: one module per dataset (registered with ``@register_dataset``)."""
