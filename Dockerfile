# syntax=docker/dockerfile:1
# The uvhost image: `docker build -t uvhost .` from the repository root.
#
# Two stages. `build` makes a virtualenv holding uvhost and its dependencies
# (all of them ship wheels, so no compiler is needed even there; if a platform
# lacks one, install build tools in this stage only). The final stage copies
# that virtualenv onto a clean slim Python: no pip cache, no build tools, no
# compiler, nothing of the source tree but the app.
#
# PID 1 is tini, not uvhost. The supervisor reaps only the workers it spawned
# (it waits for their pids), and a process that is PID 1 also inherits every
# orphan in the container: an app that starts a subprocess which outlives its
# parent would leave zombies nobody collects. tini reaps those, and forwards
# SIGTERM (docker stop, the kubelet) to uvhost alone, which drains its workers
# in order; `docker run --init` would do the same, but Kubernetes has no such
# switch, so the image brings its own.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/uvhost
WORKDIR /src
COPY pyproject.toml README.md ./
COPY host ./host
RUN /opt/uvhost/bin/pip install . \
    && /opt/uvhost/bin/uvhost --help > /dev/null

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 uvhost \
    && useradd --system --uid 10001 --gid uvhost --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin uvhost
COPY --from=build /opt/uvhost /opt/uvhost
# The app: replace this line (and the config) with your own; `app_dir` points here.
COPY examples/hello.py /app/hello.py
COPY deploy/container/uvhost.toml /etc/uvhost/config/uvhost.toml
ENV PATH=/opt/uvhost/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
EXPOSE 8000 9000
# What `uvhost run` drains on; tini passes it on. (A second SIGTERM exits at once.)
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "uvhost"]
CMD ["run", "/etc/uvhost/config/uvhost.toml"]
