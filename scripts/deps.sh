#!/usr/bin/env bash
# deps.sh: installs the Debian packages sluice needs to build, test and run its local stack
# (compiler and libraries, ClickHouse, Kafka's Java runtime and Maven, kcat, an SMTP sink).
# Idempotent: asks dpkg first and runs apt-get only when something is missing.
#
#   scripts/deps.sh        install what is missing, print one line saying what
set -euo pipefail

packages=(
    # Build tools.
    build-essential cmake pkg-config
    # Libraries sluice links against (headers and pkg-config files).
    librdkafka-dev libcurl4-openssl-dev libmaxminddb-dev libuv1-dev libsqlite3-dev
    libjansson-dev libesmtp-dev libpcre2-dev libzstd-dev zlib1g-dev libssl-dev
    libmicrohttpd-dev libyajl-dev
    # Enrichment: libyaml reads uap-core's regexes.yaml (PCRE2 above runs its regexes); Debian's
    # uap-core carries the ua-parser test expectations the npm package leaves out.
    libyaml-dev uap-core
    # Command-line tools next to those libraries (mmdb lookups, SQLite shell).
    mmdb-bin sqlite3
    # ClickHouse server and client (Debian's 18.16) for scripts/clickhouse.sh.
    clickhouse-server clickhouse-client
    # Kafka: kcat for metadata checks, a Java runtime for the broker, Maven to fetch its jars.
    kcat openjdk-17-jre-headless maven
    # SMTP sink for notification tests.
    python3-aiosmtpd
    # Tools the stack scripts use: ps/pgrep, ss, curl.
    procps iproute2 curl
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "deps: nothing missing (${#packages[@]} packages already installed)"
    exit 0
fi

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    sudo_cmd=(sudo)
fi

# Through env, because sudo drops most of the caller's environment.
apt=("${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q)
"${apt[@]}" update >/dev/null
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${missing[*]}"
