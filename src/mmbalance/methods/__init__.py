"""Methods: one module per method, each a plugin of the one training loop (``@register_method``)."""
