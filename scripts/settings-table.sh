#!/usr/bin/env bash
# settings-table.sh: prints the Markdown table of every setting, made from the daemons'
# own settings tables (--help-config), so the README cannot drift from the code.
#
#   scripts/settings-table.sh                 print the table (needs `make` first)
#   scripts/settings-table.sh --update-readme rewrite README.md between the settings markers
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${SLUICE_BIN_DIR:-$REPO/build/bin}

table() {
    local ingest row key
    ingest=$("$BIN/sluice-ingest" --help-config)
    printf '%s\n' "$ingest"
    # Settings only the scheduler has (the shared ones are listed once, above).
    "$BIN/sluice-scheduler" --help-config | tail -n +3 | while IFS= read -r row; do
        key=$(printf '%s' "$row" | cut -d'`' -f2)
        case "$ingest" in
            *"\`$key\`"*) ;;
            *) printf '%s\n' "$row" ;;
        esac
    done
}

if [ "${1:-}" = --update-readme ]; then
    tmp=$(mktemp)
    table >"$tmp.table"
    awk -v table="$tmp.table" '
        /<!-- settings:begin -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
        /<!-- settings:end -->/ { skip = 0 }
        !skip { print }
    ' "$REPO/README.md" >"$tmp"
    mv "$tmp" "$REPO/README.md"
    rm -f "$tmp.table"
else
    table
fi
