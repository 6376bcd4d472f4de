#!/usr/bin/env bash
# Bazel's Python interpreter for this workspace: the virtualenv at the workspace root (`.venv`,
# created by scripts/setup.sh / `make setup`). Bazel runs this file through a symlink in the
# sandbox or runfiles tree; resolving the symlink finds the source tree, whichever directory the
# repository was cloned into, so no absolute path is written anywhere.
set -euo pipefail
self="$(readlink -f "${BASH_SOURCE[0]}")"
root="$(cd "$(dirname "${self}")/../.." && pwd)"
python="${root}/.venv/bin/python"
if [[ ! -x "${python}" ]]; then
  echo "error: ${python} does not exist: run 'make setup' (scripts/setup.sh) first" >&2
  exit 2
fi
exec "${python}" "$@"
