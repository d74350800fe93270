#!/usr/bin/env bash
# End-to-end tests of the approval console in headless Chromium (Debian's
# chromium driven by playwright-core from npm): sign-in, live requests,
# approve, reject with a reason, non-approvers, XSS, keyboard, 10,000
# pending requests, phone width.
#
#   bash scripts/browser.sh
#   SCREENSHOTS=1 bash scripts/browser.sh          # also refresh docs/screenshots/
#   DASHBOARD_SCALE=500 bash scripts/browser.sh   # a smaller queue
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian)"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd crates/governor-http/tests/browser && npm ci --no-audit --no-fund --silent)
governor=$(bash scripts/governor-bin.sh)
cd crates/governor-http/tests/browser
GOVERNOR_BIN="$governor" DASHBOARD_SCALE="${DASHBOARD_SCALE:-10000}" \
    node --test --test-concurrency=1 dashboard.test.mjs demo.test.mjs 2>&1 | grep -v 'unexpected operator'
exit "${PIPESTATUS[0]}"
