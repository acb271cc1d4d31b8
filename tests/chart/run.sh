#!/usr/bin/env bash
# Runs the Helm chart and deploy-asset checks offline: renders and lints helm/spoke with the Helm v4
# library from PyPI (helm-python-sdk), validates every manifest against the Kubernetes schemas
# (kubernetes-validate), and checks the alert rules, dashboard and collector config.
#
# The virtualenv lives in target/chart-venv and is reused; it is refreshed when requirements.txt
# changes. Exits with pytest's status (non-zero on any failure).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SPOKE_CHART_VENV:-$root/target/chart-venv}"
python="${PYTHON:-python3}"
start=$(date +%s)

if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" >"$stamp"
fi

cd "$root"
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider -q "$here" "$@" || status=$?
echo "chart checks took $(( $(date +%s) - start ))s (exit $status)"
exit "$status"
