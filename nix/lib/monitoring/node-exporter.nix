# node exporter filtered at the source: only the collectors whose series
# series.nix keeps, and those narrowed to the devices that matter on a Pi 4
# (the SD card or a USB disk, the wired/wireless uplink, the root file
# system that holds the spool). Everything not collected is neither parsed by
# the agent nor, in the central-scrape mode, sent over the link.
#
# Pi signals come from built-in collectors where they suffice:
#   thermal_zone  /sys/class/thermal/thermal_zone0 (type "cpu-thermal"): the
#                 SoC temperature; CPU and GPU share this one sensor.
#   cpufreq       /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq: the
#                 ARM clock, which drops when the firmware caps it.
#   textfile      edgewatch_pi_throttled, the firmware's throttling flags
#                 (get_throttled), which no built-in collector reads; written
#                 by nixos/hardware/pi-throttled.sh from a systemd timer.
# hwmon is left out: on the Pi it repeats the thermal zone and the
# under-voltage bit that get_throttled already reports.
{
  collectors = [ "cpu" "cpufreq" "diskstats" "filesystem" "loadavg" "meminfo" "netdev" "stat" "textfile" "thermal_zone" ];

  # Flags other than the `--collector.<name>` switches (the NixOS module
  # renders those from enabledCollectors itself).
  extraFlags =
    { textfileDirectory ? "/var/lib/prometheus-node-exporter-text"
      # Whole disks only (no partitions): SD card, USB/SATA, virtio (VMs).
    , diskDevices ? "^(mmcblk[0-9]+|sd[a-z]+|vd[a-z]+|nvme[0-9]+n[0-9]+)$"
      # The uplink only: no lo, veth*, cni0, flannel.1.
    , netDevices ? "^(end[0-9]+|eth[0-9]+|en[a-z0-9]+|wlan[0-9]+)$"
    }: [
      "--collector.disable-defaults"
      # go_*, process_*, promhttp_*: about 40 series about the exporter itself.
      "--web.disable-exporter-metrics"
      # Only "/" (RE2 has no look-ahead: exclude every longer mount point).
      # The spool (/var/spool/edgewatch) and the agent's WAL live there.
      "--collector.filesystem.mount-points-exclude=^/.+"
      # device-include is refused next to a device-exclude, and both
      # collectors have a default exclude: clear it explicitly.
      "--collector.diskstats.device-exclude="
      "--collector.diskstats.device-include=${diskDevices}"
      "--collector.netdev.device-exclude="
      "--collector.netdev.device-include=${netDevices}"
      "--collector.textfile.directory=${textfileDirectory}"
    ];
}
