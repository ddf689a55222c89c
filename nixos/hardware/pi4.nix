# Raspberry Pi 4 camera node hardware: the SD image (U-Boot + extlinux), the
# kernel command line and initrd the vendor kernel needs, the firmware's
# config.txt (gpu_mem, camera auto-detect), the performance governor, and
# the assertions that keep the known Pi 4 + NixOS + k3s failures out
# (nix/KNOWN-ISSUES.md has the upstream reports).
# Imported (with nixos-hardware's raspberry-pi-4 module) by nixos/hosts.nix
# for every host with role "node"; the VM tests leave it out.
{ config, lib, pkgs, modulesPath, ... }:
let
  host = config.edgewatch.host;
  edgeLib = import ../../nix/lib;
  inherit (edgeLib) piBoot;
  # The block rendered by nix/lib/config-txt.nix from the site description.
  configTxtBlock = pkgs.writeText "config-txt-edgewatch" host.configTxt;
  # The whole config.txt of the image: U-Boot chain-load keys + the block.
  configTxtFile = pkgs.writeText "config.txt" (edgeLib.configTxt.renderFile host.configTxt);
  # Marks the firmware commands below, so an assertion notices when another
  # module replaces them (see the assertions).
  firmwareMarker = "edgewatch: Pi 4 firmware partition (nixos/hardware/pi4.nix)";
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

  kernel = config.boot.kernelPackages.kernel;
  vendorKernel = piBoot.isVendorKernel { name = kernel.name or ""; version = kernel.version or ""; };
  initrdProblems = piBoot.initrdProblems (config.boot.initrd.availableKernelModules ++ config.boot.initrd.kernelModules);
  zfsOn = (config.boot.supportedFilesystems.zfs or false) || (config.boot.initrd.supportedFilesystems.zfs or false);
in
{
  # nixos/modules/installer/sd-card/sd-image.nix (read @00850412): MBR, FAT
  # /boot/firmware (noauto), ext4 root grown on first boot;
  # config.system.build.sdImage is the image. Imported directly, not through
  # sd-image-aarch64.nix (read @11c1152e), which also imports
  # profiles/base.nix: the installer's tools (testdisk, ddrescue, w3m, ...)
  # and every file system including ZFS on each camera node, where ZFS's
  # kernel module must also build against the vendor kernel (nixpkgs#376820).
  # What sd-image-aarch64.nix set that a Pi 4 needs is set below.
  imports = [ "${modulesPath}/installer/sd-card/sd-image.nix" ];

  nixpkgs.hostPlatform = lib.mkDefault "aarch64-linux";

  # The firmware loads U-Boot, U-Boot boots the generation from
  # extlinux.conf (nixos/modules/system/boot/loader/generic-extlinux-compatible).
  boot.loader.grub.enable = false;
  boot.loader.generic-extlinux-compatible.enable = true;

  # The memory controller for k3s (nix/lib/pi-boot.nix says why this
  # parameter, why last, and how it reaches the kernel on this boot path):
  # without it the agent exits with "failed to find memory cgroup"
  # (k3s-io/k3s#1825, #2067, #8890, #10755; raspberrypi/linux#1198, #3644,
  # #5933, #6980) and the node never joins. Plus the serial and HDMI consoles.
  boot.kernelParams = piBoot.kernelParams;

  # sd-image.nix turns on hardware.enableAllHardware (every installer's
  # initrd module, including Allwinner/Rockchip ones the vendor kernel does
  # not build: "modprobe: FATAL: Module sun4i-drm not found", nixpkgs#111683,
  # #154163, nixos-hardware#2006); the default list adds SATA/PATA drivers
  # (nixpkgs#391617). A bool, set true there, so only mkForce can undo it.
  # Without it hardware.enableRedistributableFirmware is off too: a Pi 4
  # needs none of it (the VL805 USB firmware comes from the EEPROM, WiFi/BT
  # firmware from nixos-hardware's hardware.firmware).
  hardware.enableAllHardware = lib.mkForce false;
  boot.initrd.includeDefaultModules = false;
  # What booting from the SD card or a USB disk needs, besides
  # nixos-hardware's usbhid, usb-storage, vc4, pcie-brcmstb, reset-raspberrypi.
  boot.initrd.availableKernelModules = piBoot.initrdModules;

  sdImage = {
    # Pi 4 only: start4/fixup4 (the Pi 4 boots from its EEPROM, no
    # bootcode.bin), U-Boot, the GIC stub, the firmware's device trees (it
    # starts U-Boot with one; U-Boot then loads the generation's own), and
    # config.txt. The option has no type and no default in sd-image.nix.
    populateFirmwareCommands = ''
      # ${firmwareMarker}
      fw=${pkgs.raspberrypifw}/share/raspberrypi/boot
      cp "$fw"/start4*.elf "$fw"/fixup4*.dat firmware/
      cp "$fw"/bcm2711-rpi-4-b.dtb "$fw"/bcm2711-rpi-400.dtb "$fw"/bcm2711-rpi-cm4.dtb firmware/
      cp ${pkgs.ubootRaspberryPi4_64bit}/u-boot.bin firmware/u-boot-rpi4.bin
      cp ${pkgs.raspberrypi-armstubs}/armstub8-gic.bin firmware/armstub8-gic.bin
      cp ${configTxtFile} firmware/config.txt
    '';
    populateRootCommands = ''
      mkdir -p ./files/boot
      ${config.boot.loader.generic-extlinux-compatible.populateCmd} -c ${config.system.build.toplevel} -d ./files/boot
    '';
  };

  assertions = [
    {
      assertion = !(vendorKernel && config.services.k3s.enable) || piBoot.memoryCgroupEnabled config.boot.kernelParams;
      message = ''
        ${host.name}: the Raspberry Pi kernel (${kernel.name or "?"}) keeps the memory cgroup off unless
        boot.kernelParams ends its cgroup switches with cgroup_enable=memory; k3s would exit with
        "failed to find memory cgroup" and the node never join. boot.kernelParams is:
          ${lib.concatStringsSep " " config.boot.kernelParams}
        Keep nix/lib/pi-boot.nix's kernelParams (nix/KNOWN-ISSUES.md, memory cgroup).'';
    }
    {
      assertion = !vendorKernel || initrdProblems == [ ];
      message = ''
        ${host.name}: the initrd asks for modules the Raspberry Pi kernel does not build
        (${lib.concatStringsSep ", " initrdProblems}); the image build would fail with
        "modprobe: FATAL: Module ... not found" (nixpkgs#154163, nixos-hardware#858).
        Keep hardware.enableAllHardware and boot.initrd.includeDefaultModules off and
        boot.initrd.systemd.tpm2 disabled (nix/KNOWN-ISSUES.md, initrd modules).'';
    }
    {
      assertion = !config.hardware.enableAllHardware;
      message = "${host.name}: hardware.enableAllHardware is on; a camera node's initrd must not carry the installer's module list (nix/KNOWN-ISSUES.md).";
    }
    {
      assertion = !zfsOn;
      message = ''
        ${host.name}: ZFS is in boot.supportedFilesystems (or boot.initrd.supportedFilesystems).
        Camera nodes have no ZFS pool; its kernel module must build against the vendor kernel
        (nixpkgs#376820) and it brings the installer's baggage. Something imported
        profiles/base.nix (e.g. sd-image-aarch64.nix); import sd-image.nix instead.'';
    }
    {
      assertion = lib.hasInfix firmwareMarker config.sdImage.populateFirmwareCommands;
      message = ''
        ${host.name}: another module replaced sdImage.populateFirmwareCommands, so the image would
        lose U-Boot or config.txt (gpu_mem, kernel=u-boot-rpi4.bin) and not boot as designed.
        nixos-hardware does that after our pin (f54c3bcb, raspberry-pi/common/firmware.nix, with
        lib.mkForce). Move config.txt to hardware.raspberry-pi.configtxt and set
        hardware.raspberry-pi.firmware.uboot.enable = true, or pin nixos-hardware
        (nix/KNOWN-ISSUES.md, firmware partition).'';
    }
  ];

  # The throttling flags are a Pi 4 thing; the preflight checks them here.
  edgewatch.nodePreflight.throttled = true;

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
