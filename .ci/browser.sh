#!/usr/bin/env bash
# Browser-test prerequisites, idempotent: Debian's Chromium and a CJK font (the pages are
# Chinese first), then playwright-core from tests/browser/package-lock.json.
#
#   .ci/browser.sh            # as root on a fresh machine (CI), or again on a ready one
#
# Installs only from Debian's packages and the npm registry; playwright-core is driven with
# executablePath /usr/bin/chromium and never downloads a browser of its own. CI then runs
# `cargo test --workspace` with TAXGATE_REQUIRE_BROWSER=1 so a missing piece fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'browser.sh: %s\n' "$*"; }

# A CJK font for readable screenshots: any font with Chinese coverage will do.
has_cjk_font() {
  command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh family 2>/dev/null | head -n1)" ]
}

packages=()
if [ -x /usr/bin/chromium ]; then
  say "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
else
  packages+=(chromium)
fi
if has_cjk_font; then
  say "CJK font present: $(fc-list :lang=zh family | head -n1)"
else
  packages+=(fonts-noto-cjk)
fi

if [ "${#packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing ${packages[*]}: run this script as root (apt-get install)" >&2
    exit 1
  fi
  say "apt-get update"
  apt-get update -qq
  say "apt-get install -y ${packages[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" fontconfig
  [ -x /usr/bin/chromium ] || { say "chromium did not install" >&2; exit 1; }
  say "installed: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
fi

command -v node >/dev/null || { say "node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { say "npm is not installed" >&2; exit 1; }

# playwright-core has no install script that fetches a browser; skip scripts all the same.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
lock="tests/browser/package-lock.json"
stamp="tests/browser/node_modules/.taxgate-lock"
if [ -f "$stamp" ] && cmp -s "$lock" "$stamp" && [ -d tests/browser/node_modules/playwright-core ]; then
  say "tests/browser/node_modules up to date with package-lock.json"
else
  say "npm ci in tests/browser (node $(node --version), npm $(npm --version))"
  (cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund)
  cp "$lock" "$stamp"
fi
say "playwright-core $(node -p "require('./tests/browser/node_modules/playwright-core/package.json').version")"
say "ready: cargo test -p taxgate-e2e browser (TAXGATE_REQUIRE_BROWSER=1 makes a missing piece fail)"
