"""An offline, self-contained HTML report of a run (``python -m epochscope report``).

One file: curves, the zoomable top-5 confusion matrix and its evolution, the most confused
pairs and the per-class table, relatedness, likely mislabeled images, calibration, the
embedding map (when a layout is cached) and classified photos, with plotly.js, styles and
images inside it. Needs Pillow, and plotly for the interactive curves (``lite`` needs only
Pillow); both are imported when a report is made, not by ``import epochscope``.

Modules, one job each: ``document`` (build_report), ``header``, ``curves``, ``matrix`` (the
PNG pyramid and frames), ``tables``, ``labels``, ``embedding``, ``photos``, ``html`` and
``safe`` (escaping), ``colours``, ``png``, ``assets`` (CSS and JS), ``cli``.
"""

from epochscope.report.document import ReportError, build_report

__all__ = ["ReportError", "build_report"]
