"""mmbalance: multimodal classification under modality imbalance, reproducibly.

The package is organised by stage (see ``../shared/spec/architecture.md``):
``config`` and ``paths`` (params.yaml, run ids and paths), ``data`` (generate, extract, load),
``models`` (encoders, fusions), ``methods`` (one plugin per method), ``engine`` (the one training
loop), ``runs`` (the run files between the engine and the report), ``report`` (aggregation, tables,
figures, from files only), ``analysis`` (the papers' analyses), ``pipeline`` (every path and output a
params.yaml plans) and ``cli`` (the command line). CONTRIBUTING.md has the layers and their import rules.
"""

__version__ = "0.1.0"
