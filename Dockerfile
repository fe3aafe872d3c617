# The c360 image used by compose.yaml: the Python package and nothing else.
FROM python:3.11.11-slim-bookworm
RUN useradd --system --create-home c360 && mkdir -p /var/lib/c360 && chown c360 /var/lib/c360
WORKDIR /opt/c360
# only what the package is built from: a working copy also holds local servers' data and
# password files (.servers/), test fixtures and caches, which must not end up in the image
COPY pyproject.toml README.md ./
COPY core core
COPY plugins plugins
COPY connectors connectors
COPY appliance appliance
COPY ui ui
COPY firmware_bridge firmware_bridge
RUN pip install --no-cache-dir .
USER c360
EXPOSE 8360
