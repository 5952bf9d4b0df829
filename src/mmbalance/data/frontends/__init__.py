"""Audio front-ends: one module per spectrogram recipe (registered with ``@register_frontend``)."""
