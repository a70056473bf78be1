# No `# syntax=` line, knowingly: this file uses only what the builders' own
# Dockerfile frontend knows, and with one BuildKit would fetch that frontend
# from Docker Hub at each build (the legacy builder ignores it).
# Build: a virtual environment with flashsale and its locked dependencies.
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
# Dependencies first, so code changes do not re-download them.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
COPY README.md ./
COPY src ./src
RUN uv sync --locked --no-dev --no-editable

# Run: the same Python, the virtual environment, an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 flashsale
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    APP_HOST=0.0.0.0 \
    APP_PORT=8080
USER flashsale
WORKDIR /home/flashsale
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('APP_PORT', '8080'), timeout=2)"]
# exec form: flashsale is PID 1 and receives SIGTERM for a graceful shutdown.
CMD ["flashsale", "serve"]
