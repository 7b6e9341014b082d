"""The ops pages as HTML strings, rendered from the views of :mod:`airflow_mlops.plugins.readers`.

One module per page (:mod:`.overview`, :mod:`.pipeline`) and per section of the pipeline's page that has a table
and chart of its own (:mod:`.versions`, :mod:`.canary`, :mod:`.drift`, :mod:`.performance`); :mod:`.layout` is the frame every page has,
:mod:`.cells` the small pieces their tables share. Every value from a file or the DB goes through
:func:`html.escape` (or :func:`urllib.parse.quote` in URLs); charts are inline SVG (:mod:`airflow_mlops.plugins.charts`),
and the only script posts the control actions as JSON.
"""
