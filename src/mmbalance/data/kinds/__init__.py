"""Modality kinds: how a modality's raw file becomes a fixed-shape array in the feature store
(one module per kind, registered with ``@register_kind``)."""
