"""Late data: the wait for the source before acquire, in the worker and in the triggerer."""

import asyncio
import re
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from airflow_mlops.sensors.data import SourceWaitSensor
from airflow_mlops.triggers import TriggerStatus
from airflow_mlops.triggers.data import SourceFilesTrigger


def sensor(uri, **kwargs):
    return SourceWaitSensor(task_id="wait_for_source", pipeline="churn", artifact_root="/tmp/unused", source_uri=uri, **kwargs)


def test_it_finds_a_glob_once_a_file_lands(tmp_path):
    wait = sensor(str(tmp_path / "2026-11-03*.csv"), deferrable=False)
    assert wait.poke({}).is_done is False
    (tmp_path / "2026-11-03-part1.csv").write_text("a\n1\n")
    poked = wait.poke({})
    assert poked.is_done and poked.xcom_value == {"source": str(tmp_path / "2026-11-03*.csv"), "files": 1}


def test_a_timeout_fails_naming_the_path(tmp_path):
    missing = str(tmp_path / "late.csv")
    with pytest.raises(AirflowSensorTimeout, match=re.escape(f"No source data at {missing} after 0.005 minutes")):
        sensor(missing, deferrable=False, poke_interval=0.05, timeout=0.3).execute({})


def test_deferrable_it_looks_once_then_hands_the_wait_to_the_trigger(tmp_path):
    path = tmp_path / "day.csv"
    with pytest.raises(TaskDeferred) as deferred:
        sensor(str(path), deferrable=True, poke_interval=0.05, timeout=60).execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, SourceFilesTrigger) and trigger.poll_seconds == 0.05
    assert SourceFilesTrigger(**trigger.serialize()[1]).serialize() == trigger.serialize(), "round trip, connection id included"
    threading.Timer(0.3, path.write_text, args=("a\n1\n",)).start()  # the export lands while the trigger polls
    started = time.monotonic()
    event = asyncio.run(anext(trigger.run()))
    assert event.payload == {"status": TriggerStatus.SUCCESS, "message": f"{path}: 1 file(s)", "files": 1}
    assert time.monotonic() - started >= 0.25
    done = sensor(str(path)).execute_complete({}, event.payload, deadline=time.time() + 60)
    assert done == {"source": str(path), "files": 1}
    path.write_text("a\n1\n")
    assert sensor(str(path), deferrable=True).execute({})["files"] == 1, "already there: no deferral"


def test_a_deferred_wait_that_times_out_names_the_path(tmp_path):
    wait = sensor(str(tmp_path / "late.csv"), timeout=600)
    with pytest.raises(AirflowSensorTimeout, match=r"No source data at .*late\.csv after 10 minutes"):
        wait.resume_execution("__fail__", {"error": "Trigger timeout"}, {})
