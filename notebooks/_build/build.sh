#!/usr/bin/env bash
# Regenerate notebooks 00-03 from their make_XX.py sources and execute them in place, so the
# committed notebooks carry their outputs. Usage: notebooks/_build/build.sh [00 01 ...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$here/../../.venv/bin/python"
cd "$here"
for n in "${@:-00 01 02 03}"; do
  for k in $n; do
    nb=$("$py" "make_$k.py")
    "$here/../../.venv/bin/jupyter" nbconvert --to notebook --execute --inplace "$nb"
  done
done
