#!/usr/bin/env bash
# Creates .venv (if missing or broken) and installs pti with all extras into it.
# Idempotent: a second run with unchanged pyproject.toml/constraints.txt does nothing.
# Every failure is explained in one line (the pip log is kept in .venv/install.log).
set -u
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
CONSTRAINTS=${CONSTRAINTS:-constraints.txt}

die() { echo "pti setup: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install Python >= 3.10 or run 'make PYTHON=/path/to/python3.11'"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null \
  || die "$("$PYTHON" --version 2>&1) is too old; pti needs Python >= 3.10 (run 'make PYTHON=python3.11')"

if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "pti setup: $VENV exists but its python does not run (broken venv); recreating it" >&2
  rm -rf "$VENV"
fi
if [ ! -e "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" >/dev/null 2>&1 || die "could not create $VENV with $PYTHON (on Debian/Ubuntu: apt-get install python3-venv)"
fi

stamp="$VENV/.pti-installed"
want=$(cat pyproject.toml "$CONSTRAINTS" 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

log="$VENV/install.log"
echo "pti setup: installing into $VENV (log: $log) ..."
{
  "$VENV/bin/python" -m pip install -q --upgrade "pip>=23" &&
  "$VENV/bin/python" -m pip install -c "$CONSTRAINTS" -e ".[all]" &&
  # facenet-pytorch (MTCNN, used only to score the demo generator) pins an old torch in its
  # metadata but runs on current torch; install it without letting it pull another torch.
  "$VENV/bin/python" -m pip install --no-deps "facenet-pytorch==2.6.0"
} >"$log" 2>&1 || {
  # the venv takes ~7 GB (torch's CUDA build from local disk); a full disk is the common cause
  if grep -q "No space left on device" "$log"; then
    die "pip install failed: no space left on device ($(df -h "$VENV" | awk 'NR==2 {print $4}') free where $VENV is; it needs ~7 GB) (full log: $log)"
  fi
  die "pip install failed: $(grep -E 'ERROR|error:' "$log" | tail -n 1) (full log: $log)"
}

if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
  echo "pti setup: no C++ compiler found; the optional CUDA ops cannot be built, the pure-PyTorch ops will be used" >&2
fi
echo "$want" >"$stamp"
echo "pti setup: done"
