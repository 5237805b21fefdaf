#!/usr/bin/env bash
# Install the Debian packages opencomms needs when they are missing (apt-get when root),
# otherwise name them. The list lives in scripts/system-packages.txt: "command package" per line (a "command"
# that is an absolute path is a file the package installs: data packages have no command).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
missing=()
while read -r cmd pkg; do
  [[ -z "${cmd:-}" || "$cmd" == \#* ]] && continue
  if [[ "$cmd" == /* ]]; then
    [[ -e "$cmd" ]] || missing+=("$pkg")
  else
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  fi
done < "$here/system-packages.txt"
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "opencomms needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
