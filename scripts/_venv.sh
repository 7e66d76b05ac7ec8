# Sourced by scripts/run and scripts/test: create .venv if missing and (re)install lbdns
# when pyproject.toml or a C source changed (the install compiles lbdns' C extension in place).
# Needs python3 (>= 3.11) and pip; with a C compiler and Python's headers the UDP batch loop
# is built too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
EXTRAS="${LBDNS_EXTRAS:-}"
STAMP=".venv/.lbdns-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ setup.py -nt "$STAMP" ] || [ lbdns/server/_mmsg.c -nt "$STAMP" ] || [ lbdns/wire/_scan.c -nt "$STAMP" ]; then
  if [ -n "$EXTRAS" ]; then
    .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  else
    .venv/bin/python -m pip install -q -e .
  fi
  touch "$STAMP"
fi
