# payql: python slim, a non-root user, migrations on start, `payql serve` as the command.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
# The locked runtime dependencies first (their own layer, cached until the lock changes), every file checked
# against its hash; then the project itself, built with the locked build backend and without resolving anything.
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN pip install --require-hashes --no-deps -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY payql ./payql
RUN pip install --no-deps --no-build-isolation . && pip check \
    && useradd --create-home --uid 10001 payql && mkdir -p /data && chown payql /data

USER payql
# Production unless told otherwise: it refuses to start until JWT_SECRET (at least 32 random bytes) or RS256 keys
# are set. Production sets DATABASE_URL=postgresql://..., JWT_AUDIENCE and the provider keys too (README,
# "Running in production"); for a quick look in mock mode, run with -e PAYQL_ENV=development.
ENV PAYQL_ENV=production \
    DATABASE_URL=sqlite:////data/payql.db
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"
# `payql serve` applies the migrations before it starts uvicorn.
CMD ["payql", "serve"]
