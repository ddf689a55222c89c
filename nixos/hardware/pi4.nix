# Raspberry Pi 4 camera node hardware: the aarch64 SD image, the firmware's
# config.txt (gpu_mem, camera auto-detect), the performance governor.
# Imported (with nixos-hardware's raspberry-pi-4 module) by nixos/hosts.nix
# for every host with role "node"; the VM tests leave it out.
{ config, lib, pkgs, modulesPath, ... }:
let
  host = config.edgewatch.host;
  # The block rendered by nix/lib/config-txt.nix from the site description.
  configTxtBlock = pkgs.writeText "config-txt-edgewatch" host.configTxt;
  firmwareConfigSync = pkgs.writeShellApplication {
    name = "firmware-config-sync";
    runtimeInputs = with pkgs; [ coreutils diffutils gawk ];
    text = builtins.readFile ./firmware-config-sync.sh;
  };
  # Firmware throttling flags for node exporter's textfile collector
  # (nix/lib/monitoring/node-exporter.nix says why not a built-in). vcgencmd
  # (libraspberrypi) is only the fallback for kernels without the sysfs file.
  piThrottled = pkgs.writeShellApplication {
    name = "pi-throttled";
    runtimeInputs = [ pkgs.coreutils ] ++ lib.optional (pkgs ? libraspberrypi) pkgs.libraspberrypi;
    text = builtins.readFile ./pi-throttled.sh;
  };
in
{
  # nixos/modules/installer/sd-card/sd-image-aarch64.nix (read @11c1152e):
  # U-Boot + extlinux, FAT /boot/firmware, ext4 root grown on first boot;
  # config.system.build.sdImage is the image.
  imports = [ "${modulesPath}/installer/sd-card/sd-image-aarch64.nix" ];

  nixpkgs.hostPlatform = lib.mkDefault "aarch64-linux";

  # sd-image-aarch64.nix writes config.txt as a store literal (`cp` keeps it
  # read-only) inside populateFirmwareCommands. That option has no type, so
  # definitions are concatenated without a separator: hence the leading
  # newline. Appending keeps nixpkgs' U-Boot lines intact.
  sdImage.populateFirmwareCommands = lib.mkAfter ''

    chmod u+w firmware/config.txt
    cat ${configTxtBlock} >> firmware/config.txt
  '';

  # The image is written once. Later generations reach config.txt through
  # this unit, which re-runs whenever the block changes (restartTriggers) and
  # leaves a note: the firmware applies gpu_mem only at the next power-on.
  systemd.services.edgewatch-firmware-config = {
    description = "Sync the edgewatch block of /boot/firmware/config.txt";
    wantedBy = [ "multi-user.target" ];
    restartTriggers = [ configTxtBlock ];
    # /boot/firmware is `noauto` in sd-image.nix; this mounts it on demand.
    unitConfig.RequiresMountsFor = "/boot/firmware";
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = ''
      result=$(${lib.getExe firmwareConfigSync} /boot/firmware/config.txt ${configTxtBlock})
      if [ "$result" = changed ]; then
        mkdir -p /run/edgewatch
        echo "config.txt changed (gpu_mem=${toString host.gpuMem}); applies at next reboot" \
          | tee /run/edgewatch/reboot-required
      fi
    '';
  };

  # nixos/modules/tasks/cpu-freq.nix. Inference is CPU-bound; ondemand's
  # ramp-up costs frames.
  powerManagement.cpuFreqGovernor = "performance";

  # Bounded boot menu (and store roots) on the SD card:
  # nixos/modules/system/boot/loader/generic-extlinux-compatible/default.nix.
  boot.loader.generic-extlinux-compatible.configurationLimit = 5;

  # Every 15 s, like the scrape: a oneshot service and its timer
  # (nixos/modules/system/boot/systemd.nix: systemd.services / systemd.timers).
  systemd.services.edgewatch-pi-throttled = {
    description = "Raspberry Pi throttling flags for node exporter";
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${lib.getExe piThrottled} ${config.edgewatch.observability.textfileDirectory}";
    };
  };
  systemd.timers.edgewatch-pi-throttled = {
    wantedBy = [ "timers.target" ];
    timerConfig = { OnBootSec = "10s"; OnUnitActiveSec = "15s"; AccuracySec = "1s"; };
  };

  # USB (UVC) cameras: the usual camera on these nodes, no overlay needed.
  boot.kernelModules = [ "uvcvideo" ];
}
