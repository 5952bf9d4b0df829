"""Encoders (registered with ``@register_encoder``)."""
