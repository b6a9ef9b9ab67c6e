#!/usr/bin/env bash
# Runs a crate's integration-test binary (tests/it) exactly as
# `cargo test --workspace` built it: a second pass of one crate's suite
# with other environment variables (the server suite on Postgres) would
# otherwise rebuild it, since `cargo test -p CRATE` resolves features for
# that crate alone.
#
#   scripts/run-test-binary.sh forja-server [TEST ARGS...]
set -euo pipefail
pkg=$1
shift
cd "$(dirname "$0")/.."
exe=$(${CARGO:-cargo} test --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
pkg = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == "it" and m["manifest_path"].endswith(f"/crates/{pkg}/Cargo.toml"):
        print(m["executable"])
' "$pkg")
if [ -z "$exe" ]; then
    echo "run-test-binary: no tests/it binary for $pkg" >&2
    exit 1
fi
cd "crates/$pkg"
exec "$exe" "$@"
