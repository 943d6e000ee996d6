# multinet image: both entry points (`multinet controller`, `multinet node-agent`).
# Stage 1 builds the wheel with the pinned dependencies; stage 2 is a slim runtime.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir -w /wheels -c requirements.lock .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The agent needs no shell tools: netlink is spoken directly (pyroute2).
ENTRYPOINT ["multinet"]
CMD ["--help"]
