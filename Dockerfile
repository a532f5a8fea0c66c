# syntax=docker/dockerfile:1

# Build: a static binary (no cgo), reproducible paths, version stamped in.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/latch ./cmd/latch

# Run: distroless static, as the non-root user (uid 65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/latch /usr/local/bin/latch
USER nonroot:nonroot
EXPOSE 4433 4434
ENTRYPOINT ["/usr/local/bin/latch"]
CMD ["serve", "-c", "/etc/latch/latch.yaml"]
