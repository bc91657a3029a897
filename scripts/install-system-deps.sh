#!/usr/bin/env bash
# System packages serkit can use. espeak-ng makes the synthetic corpus sound like speech;
# without it serkit falls back to a source-filter voice, so a failed install is not fatal.
set -u
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
# The web page's browser test (tests/test_service.py) drives headless Chromium; it skips without them.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null 2>&1 \
        || echo "warning: could not install ${missing[*]}; continuing without" >&2
else
    echo "note: ${missing[*]} not installed (needs root and apt-get); serkit uses its fallbacks" >&2
fi
exit 0
