#!/usr/bin/env bash
# Creates .venv-ci with the Python clients the gateway is tested with (the official `mcp`, `anthropic` and
# `openai` packages; KS-15.6) and prints the interpreter's path. Used by .ci/run and, when the
# environment is missing, by test/gateway/python-clients.test.ts. pip on these machines reads a
# local package index (pip.conf extra-index-url); `--retries 0` keeps an unreachable default
# index from stalling the install.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-ci/bin/python ] || ! .venv-ci/bin/python -c 'import mcp, openai, anthropic' 2>/dev/null; then
  python3 -m venv .venv-ci >&2
  .venv-ci/bin/pip install --quiet --disable-pip-version-check --retries 0 --timeout 15 mcp openai anthropic >&2
fi
echo "$PWD/.venv-ci/bin/python"
