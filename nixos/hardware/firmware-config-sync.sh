# firmware-config-sync CONFIG_TXT BLOCK_FILE
#
# Puts BLOCK_FILE (rendered by nix/lib/config-txt.nix, markers included) into
# CONFIG_TXT: the text between an existing "# BEGIN edgewatch" line and the
# next "# END edgewatch" line is replaced, otherwise the block is appended.
# Prints "changed" when the file was rewritten, "unchanged" otherwise.
# The firmware only reads config.txt at power-on, so "changed" means the new
# values (gpu_mem, camera_auto_detect) apply from the next reboot.
set -euo pipefail

cfg=${1:?usage: firmware-config-sync CONFIG_TXT BLOCK_FILE}
block=${2:?usage: firmware-config-sync CONFIG_TXT BLOCK_FILE}

if [ ! -e "$cfg" ]; then
  echo "firmware-config-sync: $cfg does not exist (is /boot/firmware mounted?)" >&2
  exit 1
fi

tmp=$(mktemp "$cfg.XXXXXX")
trap 'rm -f "$tmp"' EXIT
awk -v blockfile="$block" '
  function emit(  line) { while ((getline line < blockfile) > 0) print line; close(blockfile) }
  index($0, "# BEGIN edgewatch") == 1 { if (!found) emit(); found = 1; skipping = 1; next }
  skipping && index($0, "# END edgewatch") == 1 { skipping = 0; next }
  skipping { next }
  { print }
  END { if (!found) emit() }
' "$cfg" >"$tmp"

if cmp -s "$tmp" "$cfg"; then
  echo unchanged
else
  # Same directory, so this is a rename on the FAT partition, not a copy.
  mv "$tmp" "$cfg"
  sync
  echo changed
fi
