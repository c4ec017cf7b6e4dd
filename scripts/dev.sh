#!/usr/bin/env bash
# One entry point for a fresh machine: installs adaptlab into ./.venv (idempotent), then
#   scripts/dev.sh demo  -> runs the demo study on bundled real data
#   scripts/dev.sh test  -> runs the whole test suite
#   scripts/dev.sh docs  -> builds the documentation site into ./site (mkdocs build --strict; `serve` to browse)
# TORCH_SPEC overrides the torch requirement (default: the CPU wheel torch==2.13.0), e.g.
#   TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" scripts/dev.sh demo
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
VENV=.venv
STAMP="$VENV/.adaptlab-install-stamp"
want="$(cat pyproject.toml scripts/dev.sh | sha256sum | cut -c1-16) $TORCH_SPEC"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first, so the range in pyproject.toml is already satisfied and no CUDA build is pulled.
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet $TORCH_SPEC
  "$VENV/bin/python" -m pip install --quiet -e ".[test,docs]"
  echo "$want" > "$STAMP"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cmd="${1:-demo}"; shift || true
case "$cmd" in
  demo) exec "$VENV/bin/adaptlab" demo "$@" ;;
  test)
    # The report's browser test renders the HTML in headless Chromium; install it once when missing.
    if ! command -v chromium >/dev/null 2>&1; then
      if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
      else
        echo "chromium is missing: install it (e.g. sudo apt-get install -y chromium) for the report browser test" >&2
      fi
    fi
    exec "$VENV/bin/python" -m pytest "$@" ;;
  docs)
    if [ "${1:-}" = serve ]; then shift; exec "$VENV/bin/mkdocs" serve "$@"; fi
    exec "$VENV/bin/mkdocs" build --strict "$@" ;;
  *) exec "$VENV/bin/adaptlab" "$cmd" "$@" ;;
esac
