#!/usr/bin/env bash
# Refreshes constraints.txt: every package that clf[dev] (the service's extra included) depends on, pinned at the
# version installed in the active virtual environment, where the tests passed. torch is left out: it is installed
# first, the CPU wheel in CI and the README, the CUDA one in the Dockerfile's GPU build.
#
#   . .venv/bin/activate && pip install uv && tools/refresh_constraints.sh
#
# uv resolves clf's requirements from pyproject.toml against PyPI, constrained to what `pip freeze` lists, so the file
# holds the whole dependency tree and nothing else (no tools installed by hand). An override with a marker that is
# never true takes torch out of the resolution, and with it what only torch needs (its CUDA libraries among them).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python -m pip freeze --exclude-editable | grep -viE '^(clf|torch)[= @]' > "$scratch/installed.txt"
echo "torch; sys_platform == 'never'" > "$scratch/no-torch.txt"
uv pip compile pyproject.toml --extra dev --extra serve --constraint "$scratch/installed.txt" \
  --override "$scratch/no-torch.txt" --python "$(command -v python)" --no-header --no-annotate \
  --output-file constraints.txt --quiet
sed -i '1i # clf[dev]'"'"'s dependencies at the versions the tests passed with, torch aside (installed first).\n# Regenerate with tools/refresh_constraints.sh; use as pip install -c constraints.txt -e ".[dev]".' constraints.txt
