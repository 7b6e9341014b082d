"""The pipeline config: one YAML file per pipeline, validated by these models (unknown keys are errors).

The fields' defaults are the package's only defaults: the loader merges them under every file, and the
operators and sensors, used on their own, default to them too (:func:`~airflow_mlops.config.base.field_default`).
This package sits below both the factories and the Airflow layer (operators, sensors, triggers, hooks), which
import from it, never from each other upward. One module per section family:

- :mod:`.base`: the strict base model, shared field types, the issue type of cross-field errors, schedules;
- :mod:`.data`: ``source``, ``features``, ``validation``, ``preprocess``;
- :mod:`.tuning`: ``model.tuning`` (search spaces);
- :mod:`.training`: ``model``, ``compute`` (and its Kubernetes pod);
- :mod:`.evaluation`: ``evaluation`` (the gate, slices, fairness);
- :mod:`.deployment`: ``canary`` (analysis, post-promotion watch, KServe);
- :mod:`.monitoring`: ``monitor`` (drift, retrain requests);
- :mod:`.scoring`: ``scoring`` (the batch scoring DAG);
- :mod:`.operations`: ``operations`` (retries, timeouts, notifications);
- :mod:`.pipeline`: ``artifacts`` and the whole file, with the rules that span sections.

Imported when DAG files are parsed and by ``airflow-mlops lint``: pydantic, the standard library and the
package's plain tables (metrics, reserved parameters) only.
"""
