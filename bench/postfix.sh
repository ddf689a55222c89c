#!/usr/bin/env bash
# A private Postfix instance on 127.0.0.1:PORT for the watchdog latency benchmark: a production
# MTA next to aiosmtpd. It queues each message (fsync'd, as any MTA before its 250) and then
# discards it, so nothing leaves the machine. Needs root and Debian's postfix package
# (`apt-get install postfix`; the system instance does not need to run).
# Usage: bench/postfix.sh start [PORT (default 2525)] | stop
# Then: BENCH_SMTP=127.0.0.1:2525 cargo bench --bench watchdog
source "$(dirname "$0")/lib.sh"
PF=$WORK/postfix
PORT=${2:-2525}
command -v postfix >/dev/null || { echo "postfix is not installed (apt-get install postfix)" >&2; exit 1; }
# Postfix logs its own start-up errors only to syslog or a terminal; give it a terminal.
tty_run() { script -qec "$*" /dev/null; }
case ${1:-} in
start)
  mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
  chown postfix "$PF/data"
  cp /etc/postfix/master.cf /etc/postfix/dynamicmaps.cf "$PF/etc/"
  # Only an smtpd on the bench port; the rest of master.cf (queue manager, cleanup, discard) stays.
  sed -i -E "s/^smtp( +)inet .*/127.0.0.1:$PORT inet n - n - - smtpd/" "$PF/etc/master.cf"
  cat > "$PF/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.bench.local
mydestination = example.com
local_recipient_maps =
local_transport = discard:bench
mynetworks = 127.0.0.0/8
message_size_limit = 104857600
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
CONF
  tty_run postfix -c "$PF/etc" start
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && { echo "postfix on 127.0.0.1:$PORT (log: $PF/maillog)"; exit 0; }
    sleep 0.2
  done
  echo "postfix did not come up; see $PF/maillog" >&2
  exit 1
  ;;
stop)
  tty_run postfix -c "$PF/etc" stop
  ;;
*)
  echo "usage: $0 start [PORT] | stop" >&2
  exit 2
  ;;
esac
