"""Which Airflow runs, and the names that moved between its majors: the one place that knows.

As the providers' ``version_compat.py`` do: the version is computed once, the moved names are
imported from where this major keeps them, and every other module imports them from here. No
version check anywhere else. Airflow 2.11 keeps them in ``airflow.decorators``, ``airflow.models``
and friends; Airflow 3 in the Task SDK (``airflow.sdk``), where a Dataset is an Asset.
"""

from __future__ import annotations

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

AIRFLOW_V_3_0_PLUS = Version(Version(AIRFLOW_VERSION).base_version) >= Version("3.0.0")

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import (
        DAG,
        BaseHook,
        BaseNotifier,
        BaseOperator,
        BaseSensorOperator,
        Param,
        dag,
        get_current_context,
        task,
    )
    from airflow.sdk import Asset as Dataset
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException

    # DagRun.run_type of a run that Datasets (Assets) started.
    DATA_TRIGGERED_RUN = "asset_triggered"
else:
    from airflow.datasets import Dataset
    from airflow.decorators import dag, task
    from airflow.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException
    from airflow.hooks.base import BaseHook
    from airflow.models.baseoperator import BaseOperator
    from airflow.models.dag import DAG
    from airflow.models.param import Param
    from airflow.notifications.basenotifier import BaseNotifier
    from airflow.operators.python import get_current_context
    from airflow.sensors.base import BaseSensorOperator

    DATA_TRIGGERED_RUN = "dataset_triggered"

# The same module on both majors (the triggerer runs in core).
from airflow.triggers.base import BaseTrigger, TriggerEvent  # noqa: E402

__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_VERSION",
    "DAG",
    "DATA_TRIGGERED_RUN",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSkipException",
    "BaseHook",
    "BaseNotifier",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Dataset",
    "Param",
    "TriggerEvent",
    "dag",
    "get_current_context",
    "task",
]
