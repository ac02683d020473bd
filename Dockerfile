# One image for every service role; the command picks it:
#   docker run IMAGE api        the HTTP API (uvicorn) on :8000
#   docker run IMAGE worker     a Celery training worker
#   docker run IMAGE db upgrade apply the Alembic migrations (the compose file's one-shot `migrate`)
# Settings come from CUBE_* variables (see docs/service.md).
# torch comes first from PyTorch's own index: the CPU build by default (small); for a GPU image,
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t cube-service:gpu .
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 CUBE_DATA_DIR=/data

WORKDIR /srv
# The same install as the Makefile's (constraints.txt pins torch), after torch from the index above.
COPY pyproject.toml constraints.txt README.md ./
COPY cube ./cube
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install --index-url "$TORCH_INDEX" "$(grep '^torch==' constraints.txt)" \
 && pip install -c constraints.txt . \
 && useradd --create-home --uid 1000 cube && mkdir -p /data && chown cube /data

USER cube
VOLUME /data
EXPOSE 8000
ENTRYPOINT ["cube"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
