#!/usr/bin/env bash
# Cross-checks `podswitchd replay` with tools that share no code with podswitch: frames are
# built by scapy, and every output pcap is decoded by tshark with IPv4/UDP/TCP checksum
# validation on (and UDP 8472 decoded as VXLAN). Prints one PASS/FAIL line per case and
# exits non-zero if any case fails.
#
# Needs: cargo, /usr/bin/python3 with scapy (python3-scapy), tshark.
# Usage: packet-tests/scapy/check_replay.sh [CASE...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-/usr/bin/python3}"
helper="$here/replay_cases.py"

for tool in cargo tshark "$py"; do
    command -v "$tool" >/dev/null || { echo "check_replay: $tool not found" >&2; exit 2; }
done
"$py" -c 'import scapy' 2>/dev/null || { echo "check_replay: $py has no scapy" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "building podswitchd..." >&2
(cd "$root" && cargo build -q -p podswitch-dataplane --bin podswitchd)
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/debug/podswitchd"
[ -x "$bin" ] || { echo "check_replay: $bin was not built" >&2; exit 2; }

if [ "$#" -gt 0 ]; then cases=("$@"); else mapfile -t cases < <("$py" "$helper" list); fi

failed=0
for c in "${cases[@]}"; do
    d="$work/$c"
    log="$d.log"
    ok=1
    if ! read -r cfg port < <("$py" "$helper" gen "$c" "$d" 2>"$log"); then
        ok=0
    elif ! "$bin" replay --config "$root/config/$cfg.toml" --in "$d/in.pcap" --out-dir "$d/out" \
            --in-port "$port" >"$d/summary.json" 2>>"$log"; then
        ok=0
    elif ! "$py" "$helper" check "$c" "$d" 2>>"$log"; then
        ok=0
    fi
    if [ "$ok" = 1 ]; then
        echo "PASS $c"
    else
        echo "FAIL $c: $(tail -n 3 "$log" | tr '\n' ' ')"
        failed=$((failed + 1))
    fi
done

total=${#cases[@]}
echo "$((total - failed)) passed, $failed failed"
[ "$failed" = 0 ]
