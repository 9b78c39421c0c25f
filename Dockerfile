# The same project on the official Airflow 2.11 image (Python 3.11), with the locked packages
# and the CPU build of torch. Build: docker build -t mri-pipeline .
FROM apache/airflow:2.11.0-python3.11

# The lock pins torch==2.13.0+cpu, which lives on PyTorch's CPU index, not on PyPI.
COPY --chown=airflow:root requirements-lock.txt /opt/airflow/requirements-lock.txt
RUN pip install --no-cache-dir \
        --extra-index-url https://download.pytorch.org/whl/cpu \
        -r /opt/airflow/requirements-lock.txt

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root sql/ /opt/airflow/sql/
COPY --chown=airflow:root migrations/ /opt/airflow/migrations/

ENV PYTHONPATH=/opt/airflow \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES="airflow.* astro.*" \
    AIRFLOW_CONN_MRI_DB='{"conn_type": "duckdb", "host": "/opt/airflow/data/mri.duckdb"}' \
    MRI_STORAGE_ROOT=/opt/airflow/data/storage
