#!/usr/bin/env bash
# Every setting the daemons know (their --help-config) is documented in README.md, and the
# README documents no setting that does not exist.
set -euo pipefail

readme=${SLUICE_SOURCE_DIR:?}/README.md
bin=${SLUICE_BIN_DIR:?}
known=$( { "$bin/sluice-ingest" --help-config; "$bin/sluice-scheduler" --help-config; } |
    grep -o '^| `SLUICE_[A-Z0-9_]*`' | tr -d '|` ' | sort -u)
documented=$(grep -o '^| `SLUICE_[A-Z0-9_]*`' "$readme" | tr -d '|` ' | sort -u)

missing=$(comm -23 <(echo "$known") <(echo "$documented"))
stale=$(comm -13 <(echo "$known") <(echo "$documented"))
if [ -n "$missing" ]; then
    echo "settings missing from README.md's table:" $missing >&2
fi
if [ -n "$stale" ]; then
    echo "README.md documents settings that do not exist:" $stale >&2
fi
if [ -n "$missing" ] || [ -n "$stale" ]; then
    exit 1
fi
echo "README documents all $(echo "$known" | wc -l) settings"
