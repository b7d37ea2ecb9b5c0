#!/usr/bin/env bash
# Installs the non-Python tools the test suite needs: the Khronos glTF validator (npm) and
# headless Chromium (Debian) for the viewer test. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -f .cache/node/node_modules/gltf-validator/package.json ]; then
  npm install --silent --no-audit --no-fund --prefix .cache/node gltf-validator@2.0.0-dev.3.10 >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the viewer test will fail in CI" >&2
  else
    echo "warning: chromium missing (run: sudo apt-get install chromium)" >&2
  fi
fi
