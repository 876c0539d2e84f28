#!/usr/bin/env bash
# enrich-data.sh: installs the enrichment rule data from npm into a cache outside the tree and
# prints where it is: ua-parser's uap-core regexes.yaml, the uap-core test expectations
# (tests/test_ua.yaml, test_os.yaml, test_device.yaml) and the crawler-user-agents list
# (crawler-user-agents.json). Versions are pinned; a second run with everything present does
# not touch the network.
#
#   scripts/enrich-data.sh     install what is missing, then print KEY=path lines on stdout
#                              (for `set -a; . <(scripts/enrich-data.sh); set +a`):
#                                SLUICE_UA_REGEXES          uap-core regexes.yaml
#                                SLUICE_CRAWLER_PATTERNS    crawler-user-agents.json
#                                SLUICE_TEST_UAP_CORE_DIR   a uap-core folder with regexes.yaml and
#                                                           tests/test_{ua,os,device}.yaml of one
#                                                           release (Debian's uap-core package:
#                                                           the npm tarball leaves tests/ out)
#                                SLUICE_TEST_CRAWLERS_JSON  crawler-user-agents.json
#
# The cache is ${SLUICE_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/npm}. npm comes with
# the machine's Node.js; when it is missing, Debian's npm package is installed.
set -euo pipefail

UAP_CORE_VERSION=0.18.0
CRAWLERS_VERSION=1.60.0
PREFIX=${SLUICE_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/npm}

log() {
    echo "enrich-data: $*" >&2
}

# Prints the installed version of npm package $1 under PREFIX, or nothing.
installed_version() {
    local manifest="$PREFIX/node_modules/$1/package.json"

    if [ -f "$manifest" ]; then
        sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$manifest" | head -n 1
    fi
}

ensure_npm() {
    local sudo_cmd=()

    if command -v npm >/dev/null 2>&1; then
        return
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo_cmd=(sudo)
    fi
    log "npm not found; installing Debian's npm"
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q install -y \
        --no-install-recommends npm >/dev/null
}

wanted=()
if [ "$(installed_version uap-core)" != "$UAP_CORE_VERSION" ]; then
    wanted+=("uap-core@$UAP_CORE_VERSION")
fi
if [ "$(installed_version crawler-user-agents)" != "$CRAWLERS_VERSION" ]; then
    wanted+=("crawler-user-agents@$CRAWLERS_VERSION")
fi
if ((${#wanted[@]} > 0)); then
    ensure_npm
    mkdir -p "$PREFIX"
    log "installing ${wanted[*]} into $PREFIX"
    # --no-save keeps no package.json/lock in the cache; --ignore-scripts: data only.
    npm install --prefix "$PREFIX" --no-save --no-audit --no-fund --ignore-scripts \
        --loglevel=error "${wanted[@]}" >&2
fi

uap="$PREFIX/node_modules/uap-core"
crawlers="$PREFIX/node_modules/crawler-user-agents/crawler-user-agents.json"
for f in "$uap/regexes.yaml" "$crawlers"; do
    if [ ! -s "$f" ]; then
        log "missing after install: $f"
        exit 1
    fi
done

# The conformance tests need regexes.yaml and the expectations of one and the same release.
# The npm package ships no tests/, Debian's uap-core package (scripts/deps.sh) does.
tests_dir=""
for d in "$uap" "${SLUICE_UAP_CORE_DEBIAN:-/usr/share/uap-core}"; do
    if [ -s "$d/regexes.yaml" ] && [ -s "$d/tests/test_ua.yaml" ] &&
        [ -s "$d/tests/test_os.yaml" ] && [ -s "$d/tests/test_device.yaml" ]; then
        tests_dir=$d
        break
    fi
done
if [ -z "$tests_dir" ]; then
    log "no uap-core tests/test_{ua,os,device}.yaml found (run scripts/deps.sh for Debian's uap-core)"
    exit 1
fi

echo "SLUICE_UA_REGEXES=$uap/regexes.yaml"
echo "SLUICE_CRAWLER_PATTERNS=$crawlers"
echo "SLUICE_TEST_UAP_CORE_DIR=$tests_dir"
echo "SLUICE_TEST_CRAWLERS_JSON=$crawlers"
