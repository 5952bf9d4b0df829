"""mmbalance: multimodal classification under modality imbalance, reproducibly.

The package is organised by stage (see ``../shared/spec/architecture.md``):
``data`` (generate, extract, load), ``models`` (encoders, fusions), ``methods``
(one plugin per method), ``engine`` (the one training loop), ``report``
(aggregation, tables, figures) and ``cli`` (the command line).
"""

__version__ = "0.1.0"
