#!/usr/bin/env bash
# Installs the Debian tools the test suite uses, when missing:
#   promtool and prometheus (package prometheus), chromium + chromium-driver (browser tests),
#   fonts-noto-cjk (a Chinese font, so the browser renders the live view's Chinese labels instead of boxes).
set -euo pipefail
need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
has_cjk_font() {  # any font covering Chinese will do; without fontconfig, ask dpkg for the Noto package
  if command -v fc-list >/dev/null 2>&1; then
    [ -n "$(fc-list :lang=zh family)" ]
  else
    [ "$(dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null)" = "install ok installed" ]
  fi
}
has_cjk_font || need+=(fonts-noto-cjk)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
