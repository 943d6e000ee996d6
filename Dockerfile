# multinet image: both entry points (`multinet controller`, `multinet node-agent`).
# Stage 1 builds the wheels with the pinned dependencies; stage 2 is the runtime.
# BASE_IMAGE is any image with python3 (3.11+) and its venv module: the slim Python image by
# default; `make image` passes a Debian bookworm base built from Debian packages (no Docker).
# Everything goes into a virtualenv because Debian's own python3 refuses pip (PEP 668).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/build
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
RUN /opt/build/bin/python3 -m pip wheel --no-cache-dir -w /wheels -c requirements.lock .

FROM ${BASE_IMAGE}
COPY --from=build /wheels /wheels
# Docstrings and asserts stripped (-OO): about 3 MB less resident in each program, and nothing
# in multinet or what it calls at run time reads a docstring (its --help texts are its own
# strings). Set before the install, so pip compiles the .opt-2.pyc files this level loads.
ENV PYTHONOPTIMIZE=2
# --no-index: every dependency is a wheel from stage 1; the runtime stage needs no network.
RUN python3 -m venv /opt/multinet \
    && /opt/multinet/bin/python3 -m pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels
ENV PATH=/opt/multinet/bin:$PATH
# The agent needs no shell tools: netlink is spoken directly (pyroute2).
ENTRYPOINT ["multinet"]
CMD ["--help"]
