# Test of nixos/hardware/pi-throttled.sh against a fake sysfs tree and a fake
# vcgencmd: bits decoded, sysfs preferred, vcgencmd fallback, nothing written
# (and a stale file removed) without a source, garbage rejected, and the
# output accepted by `promtool check metrics` when promtool is installed.
# Run: bash nix/tests/pi-throttled-test.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
script="$here/../../nixos/hardware/pi-throttled.sh"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
value() { # value FILE CONDITION WHEN
  sed -n "s/^edgewatch_pi_throttled{condition=\"$2\",when=\"$3\"} //p" "$1"
}

mkdir -p "$dir/sys/devices/platform/soc/soc:firmware" "$dir/out" "$dir/bin"
# 0x50005: under-voltage and throttled now (bits 0, 2) and since boot (16, 18).
echo 50005 >"$dir/sys/devices/platform/soc/soc:firmware/get_throttled"
SYSFS="$dir/sys" VCGENCMD=/nonexistent bash "$script" "$dir/out"
prom="$dir/out/pi-throttled.prom"
got=""
for c in under_voltage arm_freq_capped throttled soft_temp_limit; do
  got+="$c=$(value "$prom" "$c" now)/$(value "$prom" "$c" since_boot) "
done
want="under_voltage=1/1 arm_freq_capped=0/0 throttled=1/1 soft_temp_limit=0/0 "
if [ "$got" = "$want" ]; then ok "sysfs 50005 decoded"; else bad "sysfs 50005 decoded as '$got', want '$want'"; fi
if [ "$(grep -c '^edgewatch_pi_throttled{' "$prom")" = 8 ]; then ok "8 series"; else bad "not 8 series"; fi
if [ -z "$(find "$dir/out" -name '.pi-throttled.*')" ]; then ok "no temporary file left"; else bad "temporary file left"; fi

if command -v promtool >/dev/null; then
  if promtool check metrics <"$prom"; then ok "promtool check metrics"; else bad "promtool check metrics"; fi
fi

# vcgencmd fallback (no sysfs file): arm frequency capped since boot only.
cat >"$dir/bin/vcgencmd" <<'X'
#!/bin/sh
[ "$1" = get_throttled ] && echo "throttled=0x20000"
X
chmod +x "$dir/bin/vcgencmd"
SYSFS="$dir/nosys" VCGENCMD="$dir/bin/vcgencmd" bash "$script" "$dir/out"
if [ "$(value "$prom" arm_freq_capped since_boot)$(value "$prom" arm_freq_capped now)" = 10 ]; then
  ok "vcgencmd fallback"
else
  bad "vcgencmd fallback"
fi

# No source: the stale file goes, exit 0.
if SYSFS="$dir/nosys" VCGENCMD=/nonexistent bash "$script" "$dir/out" 2>/dev/null && [ ! -e "$prom" ]; then
  ok "no source: no file"
else
  bad "no source: file kept or non-zero exit"
fi

# Garbage is an error (the timer unit shows it failed).
echo "error" >"$dir/sys/devices/platform/soc/soc:firmware/get_throttled"
if SYSFS="$dir/sys" bash "$script" "$dir/out" 2>/dev/null; then bad "garbage accepted"; else ok "garbage rejected"; fi
exit "$fail"
