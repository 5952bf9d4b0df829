"""Fusion modules (registered with ``@register_fusion``)."""
