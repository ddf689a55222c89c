# pi-throttled TEXTFILE_DIR
#
# Writes the Raspberry Pi firmware's throttling flags (get_throttled) for
# node exporter's textfile collector, as TEXTFILE_DIR/pi-throttled.prom:
#
#   edgewatch_pi_throttled{condition="under_voltage|arm_freq_capped|throttled|soft_temp_limit",
#                          when="now|since_boot"} 0|1
#
# Source, first found: the firmware driver's sysfs file (Raspberry Pi
# kernels), else `vcgencmd get_throttled`. Neither present (another board, a
# VM): the file is removed and the script says so on stderr.
# Temperature and clock come from node exporter's own thermal_zone and
# cpufreq collectors; nothing else reads these flags.
# SYSFS (default /sys) and VCGENCMD (default vcgencmd) are for the tests.
set -euo pipefail

dir=${1:?usage: pi-throttled TEXTFILE_DIR}
sysfs=${SYSFS:-/sys}
vcgencmd=${VCGENCMD:-vcgencmd}
sysfs_file="$sysfs/devices/platform/soc/soc:firmware/get_throttled"
out="$dir/pi-throttled.prom"

if [ -r "$sysfs_file" ]; then
  raw=$(tr -d '[:space:]' <"$sysfs_file")
elif command -v "$vcgencmd" >/dev/null 2>&1; then
  raw=$("$vcgencmd" get_throttled) # "throttled=0x50005"
  raw=${raw#throttled=}
else
  echo "pi-throttled: neither $sysfs_file nor $vcgencmd found; no throttling metrics" >&2
  rm -f "$out"
  exit 0
fi
raw=${raw#0x}
if ! [[ $raw =~ ^[0-9a-fA-F]{1,8}$ ]]; then
  echo "pi-throttled: unexpected get_throttled value '$raw'" >&2
  exit 1
fi
flags=$((16#$raw))

tmp=$(mktemp "$dir/.pi-throttled.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
  echo "# HELP edgewatch_pi_throttled Raspberry Pi firmware throttling flag (get_throttled bit), 1 when set."
  echo "# TYPE edgewatch_pi_throttled gauge"
  # Bits 0-3: the condition now; bits 16-19: it occurred since boot.
  bit=0
  for condition in under_voltage arm_freq_capped throttled soft_temp_limit; do
    echo "edgewatch_pi_throttled{condition=\"$condition\",when=\"now\"} $(((flags >> bit) & 1))"
    echo "edgewatch_pi_throttled{condition=\"$condition\",when=\"since_boot\"} $(((flags >> (bit + 16)) & 1))"
    bit=$((bit + 1))
  done
} >"$tmp"
chmod 0644 "$tmp"
# Atomic: node exporter never reads a half-written file.
mv "$tmp" "$out"
trap - EXIT
