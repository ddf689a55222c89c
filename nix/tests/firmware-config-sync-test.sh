# Test of nixos/hardware/firmware-config-sync.sh against files on disk:
# append when absent, idempotent when equal, replace in place (once) when the
# block changed, and leave the lines around the block alone.
# Run: bash nix/tests/firmware-config-sync-test.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sync_script="$here/../../nixos/hardware/firmware-config-sync.sh"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
expect() { # expect NAME EXPECTED_FILE ACTUAL_FILE
  if cmp -s "$2" "$3"; then echo "ok: $1"; else echo "FAIL: $1"; diff -u "$2" "$3" || true; fail=1; fi
}

printf '[pi4]\nkernel=u-boot-rpi4.bin\n[all]\narm_64bit=1\n' >"$dir/config.txt"
printf '# BEGIN edgewatch (v1)\n[pi4]\ngpu_mem=128\n[all]\n# END edgewatch\n' >"$dir/block1"
printf '# BEGIN edgewatch (v2)\n[pi4]\ngpu_mem=16\n[all]\ncamera_auto_detect=0\n# END edgewatch\n' >"$dir/block2"

out=$(bash "$sync_script" "$dir/config.txt" "$dir/block1")
[ "$out" = changed ] || { echo "FAIL: first run said $out"; fail=1; }
cat - "$dir/block1" >"$dir/want1" <<'X'
[pi4]
kernel=u-boot-rpi4.bin
[all]
arm_64bit=1
X
expect "block appended" "$dir/want1" "$dir/config.txt"

out=$(bash "$sync_script" "$dir/config.txt" "$dir/block1")
[ "$out" = unchanged ] || { echo "FAIL: second run said $out"; fail=1; }
expect "idempotent" "$dir/want1" "$dir/config.txt"

echo "hdmi_force_hotplug=1" >>"$dir/config.txt"
out=$(bash "$sync_script" "$dir/config.txt" "$dir/block2")
[ "$out" = changed ] || { echo "FAIL: third run said $out"; fail=1; }
{ head -n 4 "$dir/want1"; cat "$dir/block2"; echo "hdmi_force_hotplug=1"; } >"$dir/want2"
expect "block replaced in place, lines after it kept" "$dir/want2" "$dir/config.txt"

if bash "$sync_script" "$dir/missing.txt" "$dir/block1" 2>/dev/null; then
  echo "FAIL: a missing config.txt was not an error"; fail=1
else
  echo "ok: missing config.txt is an error"
fi
exit "$fail"
