# runner in a container, watching the host it runs on.
#
#   docker build -t runner .
#   docker run -d --name runner --restart unless-stopped \
#     --network host --pid host --cap-add NET_RAW \
#     -v /proc:/host/proc:ro -v /sys:/host/sys:ro \
#     -v runner-data:/opt/runner/var \
#     --env-file /etc/runner/env \
#     runner
#
# --network host: network rates, connections and ping are the host's (a network namespace of
# its own would show the container's); --pid host: process probes see the host's processes.
# HOST_PROC and HOST_SYS point runner at the host's /proc and /sys mounted read-only.
# The image holds the shipped jobs/, rules/ and templates/ under /opt/runner, laid out as in
# the repository, so jobs/jobs.yaml runs as it is; mount your own over them
# (-v /etc/runner/jobs:/opt/runner/jobs:ro, likewise rules and templates) and send SIGHUP
# (`docker kill -s HUP runner`) after a change. Secrets come from --env-file, never the image.
# `disk` measures the filesystems mounted in the container: mount a host filesystem to watch
# it (-v /var:/host/var:ro) and name it in the probe's `mounts:`.

FROM rust:1-bookworm AS build
WORKDIR /src
# The manifest names every target, so cargo wants each of their folders.
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY build build
COPY src src
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin runner && strip target/release/runner

FROM debian:bookworm-slim
# Root certificates for HTTPS probes and notifiers; zone data for `timezone:`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/runner /usr/local/bin/runner
COPY jobs /opt/runner/jobs
COPY rules /opt/runner/rules
COPY templates /opt/runner/templates
ENV RUNNER_JOBS=/opt/runner/jobs/jobs.yaml \
    HOST_PROC=/host/proc \
    HOST_SYS=/host/sys
VOLUME /opt/runner/var
WORKDIR /opt/runner
ENTRYPOINT ["/usr/local/bin/runner"]
CMD ["--log-format", "json"]
