"""Which Airflow runs, and the names that moved between its majors: the one place that knows.

As the providers' ``version_compat.py`` do: the version is computed once, the moved names are
imported from where this major keeps them, and every other module imports them from here. No
version check anywhere else. Airflow 2.11 keeps them in ``airflow.decorators``, ``airflow.models``
and friends; Airflow 3 in the Task SDK (``airflow.sdk``), where a Dataset is an Asset.

``task`` is Airflow's ``@task`` with the one rule every task of the pipeline shares, applied where
each task is made: a :class:`~include.config.ConfigError` fails the task for good at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

from include.config import ConfigError

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
    )
    from airflow.sdk import Asset as Dataset
    from airflow.sdk import task as airflow_task
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException

    # DagRun.run_type of a run that Datasets (Assets) started.
    DATA_TRIGGERED_RUN = "asset_triggered"
else:
    from airflow.datasets import Dataset
    from airflow.decorators import dag
    from airflow.decorators import task as airflow_task
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


def _failing_for_good_on_config_errors(decorator: Callable) -> Callable:
    """``decorator`` (Airflow's ``@task`` or ``@task.branch``, same arguments), whose function fails
    for good on a ConfigError.

    A setting the project cannot use (MRI_LABELS_CSV naming no file, ...) fails the same way on every
    try: it is raised as ``AirflowFailException``, so the task fails at once instead of spending its
    retries, each after ``retry_delay``. The message is the ConfigError's, which names the setting.
    """

    def factory(python_callable: Callable | None = None, **kwargs: Any) -> Any:
        def decorate(function: Callable) -> Any:
            @functools.wraps(function)
            def run(*args: Any, **context: Any) -> Any:
                try:
                    return function(*args, **context)
                except ConfigError as err:
                    raise AirflowFailException(str(err)) from err

            return decorator(**kwargs)(run)

        return decorate if python_callable is None else decorate(python_callable)

    return factory


task = _failing_for_good_on_config_errors(airflow_task)
task.branch = _failing_for_good_on_config_errors(airflow_task.branch)


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
