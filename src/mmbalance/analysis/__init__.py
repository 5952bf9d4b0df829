"""The papers' analyses of trained runs (the workflow's ``analysis`` stage, ``mmbalance analyse``).

One module per analysis, registered with ``@register_analysis(name)`` (:mod:`mmbalance.registry`);
each reads the checkpoints and histories of the runs of the experiment matrix and writes a figure
(every format of ``report.figure_formats``) with the numbers behind it in a CSV, or a table, into
``paths.tables``. Options come from ``analysis.<name>`` in ``params.yaml`` over the defaults next to
each analysis's code. docs/tables.md explains each figure and how to read it.

- ``representation_gap`` — LFM Figure 2: modality gap of the test features per epoch, PCA of the last epoch;
- ``label_fitting`` — LFM Figure 1: per-modality accuracy of Concat fitted to one-hot, uniform, mixed labels;
- ``gradcam`` — LFM Figure 4 / AUG Figure 4: Grad-CAM of the visual and audio encoders at chosen epochs;
- ``loss_landscape`` — MIE Figures 5–6: loss surfaces along filter-normalised directions, with sharpness;
- ``mie_stages`` — MIE Figure 3: per-modality accuracy over epochs, shaded by the modality each stage trains;
- ``missing_modality`` — AUG Table 5 for every method: fused accuracy when test samples miss a modality.

Modules whose name starts with ``_`` hold shared code (figures import matplotlib, so they are loaded only
when an analysis runs, not whenever ``params.yaml`` is validated).
"""
