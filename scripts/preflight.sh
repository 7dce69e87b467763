# shellcheck shell=bash
# The commands podswitch's scripts need, from the one table scripts/commands.tsv (command,
# Debian package, scopes). Sourced by scripts/deps.sh (what to install) and by the entry
# points before they start (lab/lab.sh, scripts/test.sh, bench/harness.sh):
#
#   preflight SCOPE...        every command of these scopes is there, or the run stops at
#                             once: "missing command X (Debian package Y): run scripts/deps.sh"
#   deps_packages SCOPE...    the Debian packages of these scopes, one a line
#
# Scopes: lab, test, bench, cluster, deps (see the table's header).

DEPS_TABLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/commands.tsv"

# The interpreter Debian's python3-* packages install into. A python3 earlier on PATH
# (pyenv, a venv) does not see them, so module checks and the scripts that import a
# Debian-packaged module (scapy, matplotlib) use this one.
DEBIAN_PYTHON="${PYTHON:-/usr/bin/python3}"
[ -x "$DEBIAN_PYTHON" ] || DEBIAN_PYTHON=python3

# deps_rows SCOPE...: "COMMAND PACKAGE" for every row in one of the scopes.
deps_rows() {
  awk -F'\t+' -v want="$*" '
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) ok[w[i]] = 1 }
    /^#/ || NF < 3 { next }
    { m = split($3, s, ","); for (i = 1; i <= m; i++) if (s[i] in ok) { print $1, $2; next } }
  ' "$DEPS_TABLE"
}

deps_packages() {
  deps_rows "$@" | awk '$2 != "-" && $2 != "rustup" && !seen[$2]++ { print $2 }'
}

preflight() {
  local cmd pkg what mods=()
  [ -r "$DEPS_TABLE" ] || { echo "preflight: $DEPS_TABLE not found" >&2; exit 1; }
  while read -r cmd pkg; do
    case "$cmd" in
      python3:*) mods+=("${cmd#python3:}:$pkg"); continue ;;
      /*) [ -e "$cmd" ] && continue; what="file $cmd" ;;
      *) command -v "$cmd" >/dev/null 2>&1 && continue; what="command $cmd" ;;
    esac
    case "$pkg" in
      -) echo "missing $what (not a Debian package: the machine must provide it)" >&2 ;;
      rustup) echo "missing $what (the Rust toolchain, through rustup): run scripts/deps.sh" >&2 ;;
      *) echo "missing $what (Debian package $pkg): run scripts/deps.sh" >&2 ;;
    esac
    exit 1
  done < <(deps_rows "$@")
  [ ${#mods[@]} -gt 0 ] || return 0
  # One interpreter for all modules: prints the first one that does not import.
  local bad
  bad=$("$DEBIAN_PYTHON" - "$DEBIAN_PYTHON" "${mods[@]}" <<'PY'
import importlib, sys
for arg in sys.argv[2:]:
    mod, pkg = arg.split(":", 1)
    try:
        importlib.import_module(mod)
    except Exception:
        print("missing Python module %s for %s (Debian package %s): run scripts/deps.sh"
              % (mod, sys.argv[1], pkg))
        break
PY
)
  if [ -n "$bad" ]; then
    echo "$bad" >&2
    exit 1
  fi
}
