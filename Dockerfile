# Production image for `pcigate gateway` and `pcigate evidence` (compose.yaml). Installs the pinned
# versions from constraints.txt; the dev extra (embedded server binaries) is deliberately not included.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/pcigate --create-home pcigate
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY pcigate ./pcigate
COPY schemas ./schemas
COPY gateway ./gateway
COPY evidence ./evidence
COPY tui ./tui
COPY reports ./reports
RUN pip install --no-cache-dir -c constraints.txt . && rm -rf /src
USER pcigate
WORKDIR /var/lib/pcigate
ENTRYPOINT ["pcigate"]
