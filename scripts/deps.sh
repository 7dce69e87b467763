#!/usr/bin/env bash
# Installs what podswitch's scripts need on a Debian machine (idempotent): the Debian
# packages that scripts/commands.tsv lists for the given scopes, and the Rust toolchain
# through rustup when cargo is missing.
#
#   scripts/deps.sh [SCOPE...]   lab (lab/lab.sh), test (scripts/test.sh), bench
#                                (bench/harness.sh), cluster; default: lab and test, the
#                                README's two commands (each installs what both need)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/preflight.sh
source "$here/preflight.sh"
scopes=("$@")
[ ${#scopes[@]} -gt 0 ] || scopes=(lab test)
mapfile -t pkgs < <(deps_packages deps "${scopes[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: installing the Rust toolchain (rustup)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy >/dev/null
fi
