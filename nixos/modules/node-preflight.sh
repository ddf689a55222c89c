# edgewatch-node-preflight [--wait SECONDS]
#
# Checks, on a running node, what the workload needs and the image cannot
# prove at build time. Each check is reported on stderr (so in the journal,
# with its priority, when run by systemd) with the fix, as
# edgewatch_preflight_ok{check="..."} 0|1 in node exporter's textfile
# directory, and on the last line of stdout ("preflight: ok ..." or
# "preflight: FAILED: <checks>", which the health gate quotes). Exit status:
# 0 all passed, 1 some failed, 2 usage error.
#
#   cgroup_memory  the memory controller is enabled in cgroup v2 (k3s refuses
#                  to start without it: "failed to find memory cgroup";
#                  nix/KNOWN-ISSUES.md)
#   cgroup_cpu     the cpu controller (CPU limits and shares of the pods)
#   cgroup_pids    the pids controller (the kubelet's pid limits)
#   camera         each camera device exists, is a character device, is the
#                  node of a video4linux device in sysfs (its `dev` matches)
#                  and is a V4L2 capture device (v4l2-ctl --info: "Video
#                  Capture" among the node's Device Caps, not only among the
#                  whole device's Capabilities: a UVC camera's metadata node
#                  has those too)
#   throttled      the firmware's throttling flags are readable (the sysfs
#                  file nixos/hardware/pi-throttled.sh reads); under-voltage
#                  now is reported as a warning, not a failure
#   clock          the clock is synchronised (k3s certificates and S3 request
#                  signing need the right time; a Pi 4 has no RTC)
#   spool          the spool directory exists with at least the minimum free
#                  space
#   page_size      the kernel's base page size is 4 KiB, the size edgewatch's
#                  allocator (jemalloc) is built for: on a 16 or 64 KiB page
#                  kernel it aborts at start ("Unsupported system page size";
#                  nix/KNOWN-ISSUES.md row 39)
#
# --wait SECONDS retries the failing checks every 5 s until all pass or the
# time is up (USB cameras enumerate and NTP synchronises after boot), then
# reports once.
#
# Environment (defaults: the real paths; the test points them at a fake tree):
#   PREFLIGHT_CHECKS  checks to run, space-separated (default: all above)
#   SYSFS /sys   PROCFS /proc   DEVFS /dev   RUNDIR /run
#   CGROUP_ROOT       default $SYSFS/fs/cgroup
#   VIDEO_DEVICES     device names under DEVFS, space-separated (video0)
#   SPOOL_DIR         /var/spool/edgewatch      SPOOL_MIN_FREE_MIB  1024
#   TEXTFILE_DIR      where edgewatch-preflight.prom goes ("" = nowhere)
#   V4L2_CTL          v4l2-ctl        TIMEDATECTL  timedatectl
set -euo pipefail

all_checks="cgroup_memory cgroup_cpu cgroup_pids camera throttled clock spool page_size"
checks=${PREFLIGHT_CHECKS:-$all_checks}
sysfs=${SYSFS:-/sys}
procfs=${PROCFS:-/proc}
devfs=${DEVFS:-/dev}
rundir=${RUNDIR:-/run}
cgroup_root=${CGROUP_ROOT:-$sysfs/fs/cgroup}
video_devices=${VIDEO_DEVICES:-video0}
spool=${SPOOL_DIR:-/var/spool/edgewatch}
min_free_mib=${SPOOL_MIN_FREE_MIB:-1024}
textfile_dir=${TEXTFILE_DIR-}
v4l2_ctl=${V4L2_CTL:-v4l2-ctl}
timedatectl=${TIMEDATECTL:-timedatectl}

wait_s=0
if [ "${1:-}" = --wait ]; then
  wait_s=${2:?usage: edgewatch-node-preflight [--wait SECONDS]}
  shift 2
fi
if [ "$#" -gt 0 ] || ! [[ $wait_s =~ ^[0-9]+$ ]] || ! [[ $min_free_mib =~ ^[0-9]+$ ]]; then
  echo "usage: edgewatch-node-preflight [--wait SECONDS]" >&2
  exit 2
fi
for c in $checks; do
  case " $all_checks " in
    *" $c "*) ;;
    *)
      echo "edgewatch-node-preflight: unknown check '$c' (known: $all_checks)" >&2
      exit 2
      ;;
  esac
done

# journald reads a <N> priority prefix on a service's stderr (sd-daemon(3));
# anywhere else the prefix would only be noise.
say() { # say PRIORITY TEXT
  if [ -n "${JOURNAL_STREAM:-}" ]; then echo "<$1>$2" >&2; else echo "$2" >&2; fi
}

# Each check sets `problem` (empty when it passes), `fix` and `detail`.
problem="" fix="" detail=""

check_controller() { # check_controller NAME
  local name=$1 controllers list
  if [ ! -r "$cgroup_root/cgroup.controllers" ]; then
    problem="cgroup v2 is not mounted at $cgroup_root (no cgroup.controllers)"
    fix="boot with the unified cgroup hierarchy (systemd's default; do not set systemd.unified_cgroup_hierarchy=0)"
    return
  fi
  read -r -a list <"$cgroup_root/cgroup.controllers" || true
  controllers=" ${list[*]} "
  if [[ $controllers == *" $name "* ]]; then
    detail="enabled (cgroup.controllers: ${list[*]})"
    return
  fi
  problem="the $name controller is not enabled in cgroup v2 (cgroup.controllers: ${list[*]})"
  case $name in
    memory)
      local cmdline=""
      [ -r "$procfs/cmdline" ] && cmdline=$(cat "$procfs/cmdline")
      fix="the Raspberry Pi kernel keeps it off unless the kernel command line's last cgroup switch for it is cgroup_enable=memory"
      fix+=" (nixos/hardware/pi4.nix sets it in boot.kernelParams; see nix/KNOWN-ISSUES.md). Boot a generation that has it and reboot."
      fix+=" This boot's command line: ${cmdline:-unreadable}"
      ;;
    *)
      fix="the kernel must be built with the $name controller and the command line must not disable it (cgroup_disable=$name)"
      ;;
  esac
}

# Major and minor number of a character device, as sysfs's `dev` spells them.
dev_numbers() {
  local hex
  hex=$(stat -L -c '%t %T' "$1")
  printf '%d:%d' "0x${hex% *}" "0x${hex#* }"
}

check_camera() {
  local name node class sysdev caps
  for name in $video_devices; do
    node=$devfs/$name
    class=$sysfs/class/video4linux/$name
    if [ ! -e "$node" ]; then
      problem="$node does not exist"
      fix="plug in the USB (UVC) camera or check its cable and power (lsusb; journalctl -k | grep -i uvc); uvcvideo is in boot.kernelModules"
      return
    fi
    if [ ! -c "$node" ]; then
      problem="$node is not a character device"
      fix="something created a plain file there; remove it and replug the camera (udev creates the node)"
      return
    fi
    if [ ! -r "$class/dev" ]; then
      problem="$node is not a video4linux device ($class/dev missing)"
      fix="the node belongs to another driver; check VIDEO_DEVICES / edgewatch.videoDevicePlugin.devices"
      return
    fi
    sysdev=$(tr -d '[:space:]' <"$class/dev")
    if [ "$sysdev" != "$(dev_numbers "$node")" ]; then
      problem="$node is $(dev_numbers "$node") but $class/dev says $sysdev"
      fix="stale device node: remove it and replug the camera"
      return
    fi
    if command -v "$v4l2_ctl" >/dev/null 2>&1; then
      if ! caps=$("$v4l2_ctl" --device="$node" --info 2>&1); then
        problem="v4l2-ctl --info on $node failed: $(echo "$caps" | tail -n 1)"
        fix="the camera does not answer V4L2 queries; replug it, check journalctl -k"
        return
      fi
      # The lines indented under "Device Caps", up to the next field.
      caps=$(echo "$caps" | awk '/Device Caps/ { on = 1; next } on && /:/ { on = 0 } on { sub(/^[ \t]+/, ""); print }')
      if ! grep -qx 'Video Capture\( Multiplanar\)\?' <<<"$caps"; then
        problem="$node is not a capture device (device caps: $(echo "$caps" | paste -sd, -))"
        fix="point edgewatch.videoDevicePlugin.devices at the camera's capture node (a UVC camera's second node is metadata only)"
        return
      fi
      detail+="$node: $(cat "$class/name" 2>/dev/null || echo "?"), capture; "
    else
      detail+="$node: $(cat "$class/name" 2>/dev/null || echo "?"), capture capability not checked ($v4l2_ctl not found); "
    fi
  done
  detail=${detail%; }
}

check_throttled() {
  local file=$sysfs/devices/platform/soc/soc:firmware/get_throttled raw
  if [ ! -r "$file" ]; then
    problem="$file is not readable"
    fix="the Raspberry Pi firmware driver (raspberrypi-hwmon / soc:firmware) is missing: boot the nixos-hardware raspberry-pi-4 kernel; without it pi-throttled reports nothing and the SocThrottled/SocUnderVoltage alerts never fire"
    return
  fi
  raw=$(tr -d '[:space:]' <"$file")
  raw=${raw#0x}
  if ! [[ $raw =~ ^[0-9a-fA-F]{1,8}$ ]]; then
    problem="$file says '$raw', not a hexadecimal flag word"
    fix="firmware and kernel disagree; update the firmware partition (raspberrypifw) with the kernel"
    return
  fi
  detail="get_throttled=0x$raw"
  if (((16#$raw) & 1)); then
    say 4 "edgewatch-node-preflight: warning: under-voltage now (get_throttled=0x$raw): replace the power supply or cable"
  fi
}

check_clock() {
  local synced=""
  if [ -e "$rundir/systemd/timesync/synchronized" ]; then
    detail="synchronised ($rundir/systemd/timesync/synchronized)"
    return
  fi
  if command -v "$timedatectl" >/dev/null 2>&1; then
    synced=$("$timedatectl" show --property=NTPSynchronized --value 2>/dev/null || true)
  fi
  if [ "$synced" = yes ]; then
    detail="synchronised (timedatectl: NTPSynchronized=yes)"
    return
  fi
  problem="the clock is not synchronised (NTPSynchronized=${synced:-unknown}); now $(date -u +%FT%TZ)"
  fix="a Pi 4 has no battery-backed clock: make an NTP server reachable (networking.timeServers, UDP 123) and check timedatectl timesync-status; k3s certificates and S3 request signatures fail with a wrong clock"
}

check_spool() {
  local avail_kib
  if [ ! -d "$spool" ]; then
    problem="$spool does not exist"
    fix="systemd-tmpfiles creates it (10-edgewatch-spool); run systemd-tmpfiles --create and check the file system is mounted"
    return
  fi
  avail_kib=$(df -Pk "$spool" | awk 'NR == 2 { print $4 }')
  if ! [[ $avail_kib =~ ^[0-9]+$ ]]; then
    problem="cannot read the free space of $spool (df said '$avail_kib')"
    fix="check the file system (journalctl -k, fsck)"
    return
  fi
  if [ "$avail_kib" -lt $((min_free_mib * 1024)) ]; then
    problem="$spool has $((avail_kib / 1024)) MiB free, less than $min_free_mib MiB"
    fix="free space on the root file system: nix-collect-garbage -d, clear old clips in $spool, check that the watchdog sends and deletes them"
    return
  fi
  detail="$((avail_kib / 1024)) MiB free (minimum $min_free_mib MiB)"
}

check_page_size() {
  local kib
  # Any process's first mapping has the base page size; this one is awk's.
  kib=$(awk '/^KernelPageSize:/ { print $2; exit }' "$procfs/self/smaps" 2>/dev/null || true)
  if ! [[ $kib =~ ^[0-9]+$ ]]; then
    problem="cannot read the kernel's page size (KernelPageSize in $procfs/self/smaps)"
    fix="check that /proc is mounted"
    return
  fi
  if [ "$kib" != 4 ]; then
    problem="the kernel uses $kib KiB pages; edgewatch's allocator (jemalloc) is built for 4 KiB and aborts at start on any other size (\"<jemalloc>: Unsupported system page size\")"
    fix="boot a 4 KiB page kernel (the Pi 4's linux_rpi4 and nixpkgs' generic aarch64 kernels are; a Pi 5 kernel_2712 is 16 KiB), or build edgewatch for that size (AARCH64_UNKNOWN_LINUX_GNU_JEMALLOC_SYS_WITH_LG_PAGE in .cargo/config.toml and nix/packages/edgewatch.nix: 14 for 16 KiB, 16 for 64 KiB)"
    return
  fi
  detail="4 KiB pages, as edgewatch's jemalloc is built for"
}

run_check() { # run_check NAME: sets problem/fix/detail
  problem="" fix="" detail=""
  case $1 in
    cgroup_memory) check_controller memory ;;
    cgroup_cpu) check_controller cpu ;;
    cgroup_pids) check_controller pids ;;
    camera) check_camera ;;
    throttled) check_throttled ;;
    clock) check_clock ;;
    spool) check_spool ;;
    page_size) check_page_size ;;
  esac
}

failing() {
  local c out=""
  for c in $checks; do
    run_check "$c"
    [ -z "$problem" ] || out+="$c "
  done
  echo "${out% }"
}

deadline=$((SECONDS + wait_s))
while [ "$wait_s" -gt 0 ]; do
  pending=$(failing)
  [ -n "$pending" ] || break
  [ "$SECONDS" -lt "$deadline" ] || break
  say 6 "edgewatch-node-preflight: waiting up to $((deadline - SECONDS))s for: $pending"
  sleep 5
done

failed=() metrics=()
for c in $checks; do
  run_check "$c"
  if [ -z "$problem" ]; then
    say 6 "edgewatch-node-preflight: ok $c: $detail"
    metrics+=("edgewatch_preflight_ok{check=\"$c\"} 1")
  else
    say 3 "edgewatch-node-preflight: FAIL $c: $problem. Fix: $fix"
    metrics+=("edgewatch_preflight_ok{check=\"$c\"} 0")
    failed+=("$c")
  fi
done

if [ -n "$textfile_dir" ]; then
  tmp=$(mktemp "$textfile_dir/.edgewatch-preflight.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  {
    echo "# HELP edgewatch_preflight_ok 1 if the node preflight check passed at its last run, 0 if it failed (journalctl -u edgewatch-node-preflight has the fix)."
    echo "# TYPE edgewatch_preflight_ok gauge"
    printf '%s\n' "${metrics[@]}"
  } >"$tmp"
  chmod 0644 "$tmp"
  # Atomic: node exporter never reads a half-written file.
  mv "$tmp" "$textfile_dir/edgewatch-preflight.prom"
  trap - EXIT
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "preflight: FAILED: ${failed[*]}"
  exit 1
fi
echo "preflight: ok ($(wc -w <<<"$checks") checks)"
