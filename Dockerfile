# syntax=docker/dockerfile:1
# Switchboard's container image: the static, pure-Go binary on scratch, with
# CA certificates and time zone data, run as a non-root user (UID 65532),
# with /data for the embedded SQLite database. The image has no shell: its
# HEALTHCHECK is the binary's own `switchboard healthcheck`.
#
#   docker build --build-arg VERSION=v0.1.0 -t switchboard:v0.1.0 .
#   docker run -p 8080:8080 -v switchboard-data:/data switchboard:v0.1.0

FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same build as CI's: static, no cgo; the version passed in.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/switchboard . \
 && mkdir -p /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/share/zoneinfo /usr/share/zoneinfo
COPY --from=build /out/switchboard /usr/local/bin/switchboard
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV ADDR=:8080 DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/switchboard", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/switchboard"]
