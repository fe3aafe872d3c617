# The c360 image used by compose.yaml: the Python package and nothing else.
FROM python:3.11-slim
RUN useradd --system --create-home c360 && mkdir -p /var/lib/c360 && chown c360 /var/lib/c360
WORKDIR /opt/c360
COPY . .
RUN pip install --no-cache-dir .
USER c360
EXPOSE 8360
