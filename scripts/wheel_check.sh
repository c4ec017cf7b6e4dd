#!/usr/bin/env bash
# The release check (issue #19): build the sdist and the wheel (`python -m build`: the wheel is built from the
# sdist, so both must carry the package data), install the wheel into a fresh venv (no editable install, no
# src/ on the path), then check `adaptlab --version` against the package metadata, run a short study on the
# bundled data, and run the tests that need package data (report templates, web-app templates and static
# files) against the installed package.
#   scripts/wheel_check.sh            # uses ./.venv's python to build (scripts/dev.sh makes it)
# PYTHON (the interpreter that builds), TORCH_SPEC (default torch==2.13.0, as scripts/dev.sh) and
# WHEEL_CHECK_DIR (default: a temporary folder, removed at the end) override the defaults.
# Pip's cache is kept: the fresh venv installs the wheels CI already downloaded, so the check stays short.
# Measured on the 2-core CI machine with a warm pip cache (2026-12-03): 119 s at load ~2.6 (build 9 s,
# install 38 s, study + report 37 s, tests 34 s); 351-402 s while the machine ran at load ~6.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PY="${PYTHON:-$REPO/.venv/bin/python}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
WORK="${WHEEL_CHECK_DIR:-$(mktemp -d -t adaptlab-wheel-XXXXXX)}"
mkdir -p "$WORK"
[ -n "${WHEEL_CHECK_DIR:-}" ] || trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
say() { echo "wheel check [$((SECONDS - t0))s]: $*"; }

say "building sdist + wheel into $WORK/dist"
"$PY" -m pip install --quiet "build==1.6.1"
rm -rf "$WORK/dist" && "$PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/adaptlab-*.whl)"
SDIST="$(ls "$WORK"/dist/adaptlab-*.tar.gz)"
say "built $(basename "$WHEEL") and $(basename "$SDIST")"

# Every file of the package that is not Python (templates, static files, bundled data) must be in both.
missing=0
tar -tzf "$SDIST" >"$WORK/sdist.txt"
"$PY" -c "import sys, zipfile; print('\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))" "$WHEEL" >"$WORK/wheel.txt"
while IFS= read -r f; do
  inner="${f#src/}"
  if ! grep -qxF "$inner" "$WORK/wheel.txt"; then
    echo "missing from the wheel: $inner" >&2; missing=1
  fi
  if ! grep -qxF "adaptlab-$(basename "$SDIST" .tar.gz | cut -d- -f2)/$f" "$WORK/sdist.txt"; then
    echo "missing from the sdist: $f" >&2; missing=1
  fi
done < <(git ls-files src/adaptlab | grep -v '\.py$')
[ "$missing" = 0 ] || exit 1
say "package data present in the wheel and the sdist"

say "installing the wheel into a fresh venv"
rm -rf "$WORK/venv" && "$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
# --no-compile: no .pyc for the whole dependency tree up front (a third of the install time on 2 cores).
PIP=("$V/python" -m pip install --quiet --no-compile --disable-pip-version-check)
# torch first, as scripts/dev.sh does, so the range in the metadata is met by the CPU build.
# shellcheck disable=SC2086
"${PIP[@]}" $TORCH_SPEC 2> >(grep -v "^WARNING: Location" >&2)
"${PIP[@]}" "$WHEEL" "pytest>=8" "httpx>=0.27" 2> >(grep -v "^WARNING: Location" >&2)
say "installed"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset PYTHONPATH
cd "$WORK"  # away from the source tree: nothing may come from src/
where="$("$V/python" -c "import adaptlab; print(adaptlab.__file__)")"
case "$where" in
  "$WORK/venv/"*) say "adaptlab imported from the installed wheel ($where)" ;;
  *) echo "adaptlab imported from $where, not from the installed wheel" >&2; exit 1 ;;
esac
cli_version="$("$V/adaptlab" --version)"
meta_version="$("$V/python" -c "from importlib.metadata import version; print(version('adaptlab'))")"
if [ "$cli_version" != "$meta_version" ]; then
  echo "adaptlab --version says $cli_version, the package metadata $meta_version" >&2; exit 1
fi
say "adaptlab --version = $cli_version = metadata"

# A short demo-like run: 300 articles of the bundled BBC News (data from an installed package), the scratch
# baseline over 2 seeds, decided, and the HTML report (report templates from the wheel).
"$V/python" - "$WORK/bbc300.csv" <<'PY'
import sys

import numpy as np
import pandas as pd

from adaptlab.data.bundled import load_bbc_news

ds = load_bbc_news()
keep = np.random.default_rng(0).permutation(len(ds))[:300]
pd.DataFrame({"text": [ds.texts[i] for i in keep], "label": [ds.labels[i] for i in keep]}).to_csv(sys.argv[1], index=False)
PY
"$V/adaptlab" study run --data "$WORK/bbc300.csv" --rungs tfidf --seeds 2 --home "$WORK/home" --json >"$WORK/study.json"
"$V/python" -c "import json, sys; d = json.load(open(sys.argv[1])); assert d['rows'][0]['rung'] == 'tfidf', d['rows']" \
  "$WORK/study.json"
"$V/adaptlab" report --home "$WORK/home" -o "$WORK/report.html" >/dev/null
grep -q "<html" "$WORK/report.html"
say "demo study and report from the installed package"

# The tests that need package data, run against the installed package (a copy of tests/, no src/).
rm -rf "$WORK/tests" && cp -r "$REPO/tests" "$WORK/tests"
printf '[pytest]\naddopts = -ra -p no:cacheprovider\nmarkers =\n    integration: real MiniLM\n' >"$WORK/pytest.ini"
# test_ui's upload -> study -> results -> report.html walk renders the web app's and the report's templates;
# the static-files test fetches the stylesheet and the script; the two upload-error tests render the problem pages.
"$V/python" -m pytest -q tests/test_ui.py -k "static_files or upload_check_study or wrong_column or bad_file_lists"
say "done in $((SECONDS - t0)) s"
