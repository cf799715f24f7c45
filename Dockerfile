# runner in a container, watching the host it runs on.
#
#   docker build -t runner .
#   docker run -d --name runner --restart unless-stopped \
#     --network host --pid host --cap-drop ALL --cap-add NET_RAW \
#     -v /proc:/host/proc:ro -v /sys:/host/sys:ro \
#     -v runner-data:/opt/runner/var \
#     --env-file /etc/runner/env \
#     runner
#
# --network host: network rates, connections and ping are the host's (a network namespace of
# its own would show the container's); --pid host: process probes see the host's processes.
# runner runs as the user `runner`, not root, with one capability: CAP_NET_RAW, set on the
# binary, for ping's raw socket (--cap-drop ALL --cap-add NET_RAW leaves it that one). Without
# root, /proc/<pid>/fd of another user's processes cannot be read: their open-file counts and
# rotation's check for writers skip them, as under the systemd unit's system user.
# The scheduler serves /metrics, the alerts, health and the status page on RUNNER_LISTEN
# (127.0.0.1:9464: with --network host, the host's loopback); HEALTHCHECK asks /-/healthy with
# `runner healthcheck`, since the image has no curl. Another address than loopback needs
# listen_auth in the jobs file (docs/configuration.md). With listen_tls the listener speaks
# only HTTPS: override the HEALTHCHECK with an https:// URL, e.g.
#   runner healthcheck --insecure "https://${RUNNER_LISTEN}/-/healthy"
# (--insecure skips the certificate check and is accepted for a loopback address only; or
# --ca-file /path/ca.crt, the certificate then checked as curl checks it, host name included).
# HOST_PROC and HOST_SYS point runner at the host's /proc and /sys mounted read-only.
# The image holds the shipped jobs/, rules/ and templates/ under /opt/runner, laid out as in
# the repository, so jobs/jobs.yaml runs as it is; mount your own over them
# (-v /etc/runner/jobs:/opt/runner/jobs:ro, likewise rules and templates) and send SIGHUP
# (`docker kill -s HUP runner`) after a change. Secrets come from --env-file, never the image.
# `disk` measures the filesystems mounted in the container: mount a host filesystem to watch
# it (-v /var:/host/var:ro) and name it in the probe's `mounts:`.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY build build
# The dependencies in a layer of their own, built against empty targets (the manifest names
# every target, so each gets a stub): a change to runner's sources then rebuilds runner alone,
# not the dependencies that took 5 min 39 s on two cores. runner's own artefacts from the stubs
# are removed, so the real sources are built whatever their timestamps.
RUN mkdir -p src tests/integration benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > tests/integration/main.rs \
    && for bench in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p}' Cargo.toml); do \
           echo 'fn main() {}' > "benches/$bench.rs"; done \
    && cargo build --release --locked --bin runner \
    && rm -rf src tests benches target/release/runner target/release/deps/runner-* \
              target/release/deps/librunner-* target/release/.fingerprint/runner-* \
              target/release/build/runner-*
COPY src src
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin runner && strip target/release/runner

FROM debian:bookworm-slim
# Root certificates for HTTPS probes and notifiers; zone data for `timezone:`; setcap to give
# the binary its one capability.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /opt/runner --no-create-home --shell /usr/sbin/nologin runner \
    && mkdir -p /opt/runner/var \
    && chown runner:runner /opt/runner/var
COPY --from=build /src/target/release/runner /usr/local/bin/runner
RUN setcap cap_net_raw=ep /usr/local/bin/runner
COPY jobs /opt/runner/jobs
COPY rules /opt/runner/rules
COPY templates /opt/runner/templates
ENV RUNNER_JOBS=/opt/runner/jobs/jobs.yaml \
    RUNNER_LISTEN=127.0.0.1:9464 \
    HOST_PROC=/host/proc \
    HOST_SYS=/host/sys
# The data volume is made from the folder above, owned by runner.
VOLUME /opt/runner/var
WORKDIR /opt/runner
USER runner
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s \
    CMD runner healthcheck "http://${RUNNER_LISTEN}/-/healthy"
ENTRYPOINT ["/usr/local/bin/runner"]
CMD ["--log-format", "json"]
