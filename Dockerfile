# The same project on the official Airflow image (Python 3.11), with the locked packages and the
# CPU build of torch. Airflow 2.11.2 with the Astro SDK (the default):
#   docker build -t mri-pipeline .
# Airflow 3.3.2:
#   docker build -t mri-pipeline:airflow3 --build-arg AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11 \
#     --build-arg REQUIREMENTS=requirements-airflow3-lock.txt .
#
# The base image, by tag and, once read, by digest too, side by side so a version bump cannot leave
# a stale digest behind. Read the digest where Docker Hub is reachable:
#   docker buildx imagetools inspect apache/airflow:2.11.2-python3.11 --format '{{json .Manifest.Digest}}'
# and pin it here as apache/airflow:2.11.2-python3.11@sha256:<digest>.
ARG AIRFLOW_IMAGE=apache/airflow:2.11.2-python3.11
FROM ${AIRFLOW_IMAGE}
ARG REQUIREMENTS=requirements-lock.txt

# The lock pins torch==2.13.0+cpu, which lives on PyTorch's CPU index, not on PyPI. --no-deps: the
# lock is the whole resolved set, made with the override that lifts astro-sdk's stale flask-session
# cap (overrides-airflow2.txt), which pip's own resolver would trip on.
# --require-hashes is what makes the extra index safe. pip cannot restrict an index to one package:
# it takes any locked name from PyPI or download.pytorch.org alike, so without hashes whatever file
# either index serves under a locked name and version would be installed. With hashes, a file whose
# sha256 is not one the lock lists for it is refused, whichever index it comes from.
# torch's hash was taken, when the lock was made, from the local wheel
# /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl on a machine that cannot reach
# download.pytorch.org: it was not checked against PyTorch's index. If that index serves other bytes,
# the build stops with a hash mismatch; re-lock then with `make lock` where /opt/wheels is absent and
# the index reachable (uv records the index's torch files). Only that x86_64 file is locked: arm64 is
# refused too.
COPY --chown=root:root requirements-lock.txt requirements-airflow3-lock.txt /opt/airflow/
RUN pip install --no-cache-dir --no-deps --require-hashes \
        --extra-index-url https://download.pytorch.org/whl/cpu \
        -r /opt/airflow/${REQUIREMENTS}

# The code belongs to root and is read-only: tasks run as `airflow` (uid 50000, group 0) and cannot
# rewrite it; group write goes too. Airflow still writes its own files (airflow.cfg, pid files) into
# /opt/airflow, but the sticky bit keeps it from renaming or deleting root's folders there, and so
# from swapping in a folder of its own. Python cannot write byte-code caches into read-only folders:
# they are written once, here. /opt/airflow/data exists, owned by airflow, so that the volume
# mounted there starts with that owner (a volume on a missing path would belong to root).
COPY --chown=root:root dags/ /opt/airflow/dags/
COPY --chown=root:root include/ /opt/airflow/include/
COPY --chown=root:root sql/ /opt/airflow/sql/
COPY --chown=root:root migrations/ /opt/airflow/migrations/
USER 0
RUN python -m compileall -q /opt/airflow/dags /opt/airflow/include \
    && chown -R root:root /opt/airflow/dags /opt/airflow/include /opt/airflow/sql /opt/airflow/migrations \
    && chmod -R a+rX,a-w /opt/airflow/dags /opt/airflow/include /opt/airflow/sql /opt/airflow/migrations \
    && install -d -o 50000 -g 0 -m 0775 /opt/airflow/data \
    && chown root:root /opt/airflow \
    && chmod 1775 /opt/airflow
USER 50000

ENV PYTHONPATH=/opt/airflow \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES="airflow.* astro.*" \
    AIRFLOW_CONN_MRI_DB='{"conn_type": "duckdb", "host": "/opt/airflow/data/mri.duckdb"}' \
    MRI_STORAGE_ROOT=/opt/airflow/data/storage
