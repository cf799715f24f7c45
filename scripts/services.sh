# Sourced by the scripts that start runner beside other programs (prometheus-scrape.sh,
# screenshots.sh): `need PACKAGE COMMAND` installs a Debian package when its command is
# missing, and says so; `$dir` is a temporary folder and `pids` the programs to stop, both
# cleaned up on exit; `free_port` prints a free TCP port on 127.0.0.1. Builds the release binary.
need() {
  if ! command -v "$2" > /dev/null; then
    echo "installing Debian's $1 package (for this script only)"
    apt-get update -qq && apt-get install -y -qq "$1" > /dev/null
  fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cargo build --release --quiet --bin runner
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
