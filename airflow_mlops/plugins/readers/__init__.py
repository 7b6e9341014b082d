"""What the ops pages show, gathered from the pipeline configs, their stores and Airflow's runs: data only, no HTML.

One module per page (:mod:`.overview`, :mod:`.pipeline`) and per thing its sections read (:mod:`.versions`,
:mod:`.canary`, :mod:`.drift`, :mod:`.performance`, :mod:`.retrain_requests`, :mod:`.events`); :mod:`.pipelines` finds the
pipelines themselves.
Every function here reads; the control routes change the registry and events through the stage functions.
"""
