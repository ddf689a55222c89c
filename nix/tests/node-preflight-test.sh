# Test of nixos/modules/node-preflight.sh against a fake sysfs/procfs/dev
# tree: the passing node, then one broken thing at a time (each must fail
# exactly its own check, say why with a fix on stderr, write 0 for it and 1
# for the others in the textfile metric, exit 1), the --wait retry, the
# journal priority prefixes, the check selection and usage errors. The
# metrics file is checked with `promtool check metrics` when promtool is
# installed.
# Run: bash nix/tests/node-preflight-test.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
script="$here/../../nixos/modules/node-preflight.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() { echo "FAIL: $1"; failed=$((failed + 1)); }

# A healthy Pi 4 camera node.
make_tree() { # make_tree DIR
  local t=$1
  rm -rf "$t"
  mkdir -p "$t/sys/fs/cgroup" "$t/sys/class/video4linux/video0" "$t/sys/devices/platform/soc/soc:firmware" \
    "$t/proc" "$t/dev" "$t/run/systemd/timesync" "$t/spool" "$t/textfile" "$t/bin"
  echo "cpuset cpu io memory hugetlb pids rdma misc" >"$t/sys/fs/cgroup/cgroup.controllers"
  echo "init=/nix/store/x-nixos-system/init console=ttyS0,115200n8 console=tty1 cgroup_enable=memory loglevel=4" >"$t/proc/cmdline"
  # Any character device will do as the camera's node; sysfs names its numbers.
  ln -s /dev/null "$t/dev/video0"
  printf '%d:%d\n' "0x$(stat -L -c %t /dev/null)" "0x$(stat -L -c %T /dev/null)" >"$t/sys/class/video4linux/video0/dev"
  echo "Fake UVC Camera" >"$t/sys/class/video4linux/video0/name"
  echo 0 >"$t/sys/devices/platform/soc/soc:firmware/get_throttled"
  touch "$t/run/systemd/timesync/synchronized"
  mkdir -p "$t/proc/self"
  printf '55d5e8400000-55d5e8402000 r--p 00000000 103:02 1234 /usr/bin/awk\nSize:                  8 kB\nKernelPageSize:        4 kB\nMMUPageSize:           4 kB\n' >"$t/proc/self/smaps"
  # v4l2-ctl --info of a UVC camera's capture node.
  cat >"$t/bin/v4l2-ctl" <<'X'
#!/bin/sh
cat <<EOF
Driver Info:
	Driver name      : uvcvideo
	Card type        : Fake UVC Camera
	Capabilities     : 0x84a00001
		Video Capture
		Metadata Capture
		Streaming
		Extended Pix Format
		Device Capabilities
	Device Caps      : 0x04200001
		Video Capture
		Streaming
		Extended Pix Format
Priority: 2
EOF
X
  chmod +x "$t/bin/v4l2-ctl"
}

# run DIR [ARGS...]: the script on the tree (PROC overrides its proc); sets rc, out (stdout), err.
run() {
  local t=$1
  shift
  rc=0
  SYSFS="$t/sys" PROCFS="${PROC:-$t/proc}" DEVFS="$t/dev" RUNDIR="$t/run" SPOOL_DIR="$t/spool" \
    SPOOL_MIN_FREE_MIB="${MIN_FREE:-1}" TEXTFILE_DIR="$t/textfile" V4L2_CTL="$t/bin/v4l2-ctl" \
    TIMEDATECTL="${TDCTL:-/nonexistent}" PREFLIGHT_CHECKS="${CHECKS:-}" \
    bash "$script" "$@" >"$t/out" 2>"$t/err" || rc=$?
  out=$(cat "$t/out")
  err=$(cat "$t/err")
}

metric() { # metric DIR CHECK
  sed -n "s/^edgewatch_preflight_ok{check=\"$2\"} //p" "$1/textfile/edgewatch-preflight.prom"
}

# expect_err NAME PATTERN: stderr of the last run matches PATTERN (grep).
expect_err() {
  if grep -q "$2" <<<"$err"; then ok "$1"; else bad "$1: stderr lacks '$2': $err"; fi
}

all="cgroup_memory cgroup_cpu cgroup_pids camera throttled clock spool page_size"

# expect_only NAME CHECK: exit 1, only CHECK failed, its fix on stderr,
# metric 0 for it and 1 for the others.
expect_only() {
  local name=$1 check=$2 c got="" want=""
  for c in $all; do
    got+="$c=$(metric "$t" "$c") "
    if [ "$c" = "$check" ]; then want+="$c=0 "; else want+="$c=1 "; fi
  done
  if [ "$rc" = 1 ] && [ "$out" = "preflight: FAILED: $check" ] \
    && grep -q "FAIL $check: .*Fix: " <<<"$err" && [ "$got" = "$want" ]; then
    ok "$name -> $check fails alone"
  else
    bad "$name: rc=$rc out='$out' metrics '$got', want '$want'"
    sed 's/^/    /' "$t/err"
  fi
}

t=$work/tree

# -------------------------------------------------------------- passing node
make_tree "$t"
run "$t"
if [ "$rc" = 0 ] && [ "$out" = "preflight: ok (8 checks)" ]; then ok "healthy node passes all 8 checks"; else bad "healthy node: rc=$rc out='$out' err: $err"; fi
if [ "$(grep -c '^edgewatch_preflight_ok{check="[a-z_]*"} 1$' "$t/textfile/edgewatch-preflight.prom")" = 8 ]; then
  ok "8 metrics, all 1"
else
  bad "metrics of the healthy node: $(cat "$t/textfile/edgewatch-preflight.prom")"
fi
if [ -z "$(find "$t/textfile" -name '.edgewatch-preflight.*')" ]; then ok "no temporary metrics file left"; else bad "temporary file left"; fi
expect_err "camera reported with its name" "ok camera: $t/dev/video0: Fake UVC Camera, capture"
if command -v promtool >/dev/null; then
  if promtool check metrics <"$t/textfile/edgewatch-preflight.prom"; then ok "promtool check metrics"; else bad "promtool check metrics"; fi
fi
TDCTL_DIR=$work/tdctl
mkdir -p "$TDCTL_DIR"
printf '#!/bin/sh\necho yes\n' >"$TDCTL_DIR/yes"
printf '#!/bin/sh\necho no\n' >"$TDCTL_DIR/no"
chmod +x "$TDCTL_DIR/yes" "$TDCTL_DIR/no"
rm "$t/run/systemd/timesync/synchronized"
TDCTL=$TDCTL_DIR/yes run "$t"
if [ "$rc" = 0 ] && grep -q "ok clock: synchronised (timedatectl" <<<"$err"; then ok "clock: timedatectl NTPSynchronized=yes also counts"; else bad "timedatectl yes: rc=$rc $err"; fi

# -------------------------------------------------------------- one failure at a time
make_tree "$t"
echo "cpuset cpu io hugetlb pids rdma misc" >"$t/sys/fs/cgroup/cgroup.controllers"
echo "coherent_pool=1M cgroup_disable=memory console=tty1" >"$t/proc/cmdline"
run "$t"
expect_only "memory controller off (vendor kernel without cgroup_enable=memory)" cgroup_memory
expect_err "memory: the fix names cgroup_enable=memory and quotes /proc/cmdline" \
  "cgroup_enable=memory.*This boot's command line: coherent_pool=1M cgroup_disable=memory"

make_tree "$t"
echo "cpuset io memory pids" >"$t/sys/fs/cgroup/cgroup.controllers"
run "$t"
expect_only "cpu controller off" cgroup_cpu

make_tree "$t"
echo "cpuset cpu io memory" >"$t/sys/fs/cgroup/cgroup.controllers"
run "$t"
expect_only "pids controller off" cgroup_pids

make_tree "$t"
rm "$t/sys/fs/cgroup/cgroup.controllers"
run "$t"
if [ "$rc" = 1 ] && [ "$out" = "preflight: FAILED: cgroup_memory cgroup_cpu cgroup_pids" ] \
  && grep -q "FAIL cgroup_memory: cgroup v2 is not mounted" <<<"$err"; then
  ok "no cgroup v2 -> the three controller checks fail"
else
  bad "no cgroup v2: rc=$rc out='$out'"
fi

make_tree "$t"
rm "$t/dev/video0"
run "$t"
expect_only "camera unplugged" camera

make_tree "$t"
rm "$t/dev/video0"
touch "$t/dev/video0"
run "$t"
expect_only "camera node is a plain file" camera

make_tree "$t"
rm -r "$t/sys/class/video4linux/video0"
run "$t"
expect_only "camera node is not a video4linux device" camera

make_tree "$t"
echo "81:7" >"$t/sys/class/video4linux/video0/dev"
run "$t"
expect_only "camera node's numbers differ from sysfs (stale node)" camera

make_tree "$t"
sed -i '/Device Caps/,/Priority/{s/\t\tVideo Capture/\t\tMetadata Capture/}' "$t/bin/v4l2-ctl"
run "$t"
expect_only "camera node is a metadata node (Video Capture only in Capabilities)" camera
expect_err "metadata node: the device caps are quoted" \
  "not a capture device (device caps: Metadata Capture,Streaming,Extended Pix Format)"

make_tree "$t"
printf '#!/bin/sh\necho "Cannot open device /dev/video0, exiting." >&2\nexit 1\n' >"$t/bin/v4l2-ctl"
run "$t"
expect_only "camera does not answer V4L2 queries" camera

make_tree "$t"
rm "$t/sys/devices/platform/soc/soc:firmware/get_throttled"
run "$t"
expect_only "throttling flags unreadable" throttled

make_tree "$t"
echo "error" >"$t/sys/devices/platform/soc/soc:firmware/get_throttled"
run "$t"
expect_only "throttling flags garbled" throttled

make_tree "$t"
rm "$t/run/systemd/timesync/synchronized"
TDCTL=$TDCTL_DIR/no run "$t"
expect_only "clock not synchronised" clock

make_tree "$t"
rmdir "$t/spool"
run "$t"
expect_only "spool directory missing" spool

make_tree "$t"
MIN_FREE=$((1 << 40)) run "$t"
expect_only "spool file system too full" spool

# -------------------------------------------------------------- behaviour
make_tree "$t"
echo 50005 >"$t/sys/devices/platform/soc/soc:firmware/get_throttled"
run "$t"
if [ "$rc" = 0 ] && grep -q "warning: under-voltage now (get_throttled=0x50005)" <<<"$err"; then
  ok "under-voltage is a warning, not a failure"
else
  bad "under-voltage: rc=$rc $err"
fi

make_tree "$t"
rm "$t/run/systemd/timesync/synchronized"
(sleep 2 && touch "$t/run/systemd/timesync/synchronized") &
started=$SECONDS
run "$t" --wait 30
wait
if [ "$rc" = 0 ] && grep -q "waiting up to .*s for: clock" <<<"$err" && [ $((SECONDS - started)) -lt 20 ]; then
  ok "--wait retries until the clock synchronises ($((SECONDS - started))s)"
else
  bad "--wait: rc=$rc after $((SECONDS - started))s: $err"
fi

make_tree "$t"
rm "$t/dev/video0"
started=$SECONDS
run "$t" --wait 6
if [ "$rc" = 1 ] && [ "$out" = "preflight: FAILED: camera" ] && [ $((SECONDS - started)) -ge 5 ]; then
  ok "--wait gives up at its deadline and reports"
else
  bad "--wait deadline: rc=$rc out='$out' after $((SECONDS - started))s"
fi

make_tree "$t"
sed -i 's/^KernelPageSize: .*/KernelPageSize:       16 kB/' "$t/proc/self/smaps"
run "$t"
expect_only "16 KiB page kernel (a Pi 5 kernel_2712)" page_size
expect_err "page_size: names the size and jemalloc's abort message" \
  "FAIL page_size: the kernel uses 16 KiB pages.*Unsupported system page size"

make_tree "$t"
rm "$t/proc/self/smaps"
run "$t"
expect_only "no smaps to read" page_size

# The real /proc of this machine (x86-64: 4 KiB).
make_tree "$t"
PROC=/proc CHECKS=page_size run "$t"
if [ "$rc" = 0 ] && grep -q "ok page_size: 4 KiB pages" <<<"$err"; then ok "page_size reads this machine's /proc"; else bad "real /proc: rc=$rc $err"; fi

make_tree "$t"
rm "$t/dev/video0"
JOURNAL_STREAM=8:1234 run "$t"
if grep -q '^<3>edgewatch-node-preflight: FAIL camera' <<<"$err" && grep -q '^<6>edgewatch-node-preflight: ok clock' <<<"$err"; then
  ok "under systemd, failures are journal priority 3 (err), passes 6 (info)"
else
  bad "journal prefixes: $err"
fi

make_tree "$t"
rm "$t/dev/video0"
CHECKS="cgroup_memory clock" run "$t"
if [ "$rc" = 0 ] && [ "$out" = "preflight: ok (2 checks)" ] \
  && [ "$(grep -c '^edgewatch_preflight_ok' "$t/textfile/edgewatch-preflight.prom")" = 2 ]; then
  ok "only the selected checks run (a node without camera skips camera)"
else
  bad "selection: rc=$rc out='$out'"
fi

CHECKS="cgroup_memory webcam" run "$t"
if [ "$rc" = 2 ] && grep -q "unknown check 'webcam'" <<<"$err"; then ok "unknown check is a usage error"; else bad "unknown check: rc=$rc"; fi
run "$t" --wait soon
if [ "$rc" = 2 ]; then ok "bad --wait is a usage error"; else bad "bad --wait: rc=$rc"; fi

echo "node-preflight: $passed passed, $failed failed"
[ "$failed" = 0 ]
