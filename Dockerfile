# One image for every service role; the command picks it:
#   docker run IMAGE api        the HTTP API (uvicorn) on :8000
#   docker run IMAGE worker     a Celery training worker
#   docker run IMAGE db upgrade apply the Alembic migrations (the compose file's one-shot `migrate`)
# Settings come from CUBE_* variables (see docs/service.md). GPU images: build with
# --build-arg TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124" (any CUDA build
# pyproject.toml's range allows); the default installs what constraints.txt pins.
FROM python:3.11-slim

ARG TORCH_SPEC=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 CUBE_DATA_DIR=/data

WORKDIR /srv
# Dependencies first (cached layer), then the code: the same install step as the Makefile's.
COPY pyproject.toml constraints.txt README.md ./
COPY cube ./cube
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY alembic.ini ./
RUN if [ -n "$TORCH_SPEC" ]; then pip install $TORCH_SPEC; fi \
 && pip install -c constraints.txt . \
 && useradd --create-home --uid 1000 cube && mkdir -p /data && chown cube /data

USER cube
VOLUME /data
EXPOSE 8000
ENTRYPOINT ["cube"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
