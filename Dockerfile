# sgc-node image: one image for the SCP, the GPU classify workers and the delivery workers.
# Build: docker build -t sgc-node .   (TORCH selects the wheel; PyPI's Linux wheel has CUDA)
FROM node:20-slim AS ohif
# OHIF's prebuilt viewer (the `viewer` service); version pinned as in viewer/fetch-ohif.sh.
ARG OHIF_VERSION=3.13.2
RUN cd /tmp && npm pack --silent "@ohif/app@${OHIF_VERSION}" && tar xzf ohif-app-*.tgz \
    && mv package/dist /ohif

FROM python:3.11-slim-bookworm

ARG TORCH="torch==2.13.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SGC_DATA_DIR=/data

# dcmtk gives echoscu/storescu for diagnosing links from inside the container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends dcmtk \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN pip install "$TORCH"
COPY pyproject.toml README.md ./
COPY sgc_config ./sgc_config
COPY sgc_node ./sgc_node
COPY scp ./scp
COPY worker ./worker
COPY sgc_core ./sgc_core
COPY db ./db
COPY viewer/app-config.js ./viewer/app-config.js
COPY --from=ohif /ohif ./viewer/dist
RUN pip install . && useradd --system --uid 1000 --home /data sgc && mkdir -p /data \
    && chown sgc /data

USER sgc
VOLUME ["/data"]
EXPOSE 11112 9108
ENTRYPOINT ["sgc"]
CMD ["serve"]
