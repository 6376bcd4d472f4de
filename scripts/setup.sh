#!/usr/bin/env bash
# Creates the project's virtualenv `.venv` (Python 3.11) and installs copart_tf into it:
# requirements.txt + requirements-dev.txt, tensorflow-serving-api (--no-deps), and the package
# itself in editable mode. Idempotent: reruns only when a requirements file or pyproject.toml
# changed since the last successful run (or with FORCE=1).
#
#   scripts/setup.sh                      # or: make setup
#   PYTHON=/path/to/python3.11 scripts/setup.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
venv="${root}/.venv"
serving_api="tensorflow-serving-api==2.21.0"

log() { echo "setup: $*" >&2; }

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [[ -n "${candidate}" ]] || continue
    command -v "${candidate}" > /dev/null 2>&1 || continue
    if "${candidate}" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2> /dev/null; then
      echo "${candidate}"
      return 0
    fi
  done
  log "error: Python 3.11 not found (tried \$PYTHON, python3.11, python3); set PYTHON=/path/to/python3.11"
  return 1
}

if [[ ! -x "${venv}/bin/python" ]]; then
  python="$(pick_python)"
  log "creating ${venv} with $(${python} --version 2>&1) (${python})"
  "${python}" -m venv "${venv}"
fi

stamp="${venv}/.copart_setup_stamp"
# The stamp records what was installed: a hash of the dependency files and this script.
wanted="$(cat requirements.txt requirements-dev.txt pyproject.toml scripts/setup.sh | cksum)"
if [[ "${FORCE:-0}" != "1" && -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]] \
    && "${venv}/bin/python" -c 'import copart_tf' 2> /dev/null; then
  log "${venv} is up to date"
  exit 0
fi

pip=("${venv}/bin/python" -m pip --disable-pip-version-check)
export PIP_PROGRESS_BAR=off
log_file="$(mktemp)"
trap 'rm -f "${log_file}"' EXIT

# Runs a step with its output in ${log_file}, shown only if the step fails.
step() {
  if ! "$@" >> "${log_file}" 2>&1; then
    cat "${log_file}" >&2
    log "error: failed: $*"
    exit 1
  fi
}

start=${SECONDS}
log "installing dependencies into ${venv} (first run: a few minutes)"
step "${pip[@]}" install -q --upgrade pip
step "${pip[@]}" install -q -r requirements.txt -r requirements-dev.txt
# Without --no-deps pip would pull the full `tensorflow` wheel next to tensorflow-cpu.
step "${pip[@]}" install -q --no-deps "${serving_api}"
step "${pip[@]}" install -q --no-deps -e .
step "${venv}/bin/python" -c 'import copart_tf, tensorflow_serving.apis.prediction_service_pb2_grpc'
echo "${wanted}" > "${stamp}"
log "done in $((SECONDS - start)) s"
