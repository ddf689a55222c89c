# Boot-critical facts about the Raspberry Pi 4 camera nodes, as pure data
# and predicates that nixos/hardware/pi4.nix uses for its settings and its
# assertions, and that nix/tests/pi-boot.nix pins. nix/KNOWN-ISSUES.md has
# the upstream reports behind each of them.
{ helpers ? import ./helpers.nix }:
let
  inherit (builtins) elem filter length elemAt match replaceStrings split isString;
  inherit (helpers) hasPrefix;

  # modprobe treats - and _ in module names alike; compare in one spelling.
  normalise = replaceStrings [ "-" ] [ "_" ];

  # The controllers a cgroup_enable=/cgroup_disable= parameter names
  # ("cgroup_enable=cpuset,memory" names two), or null for other parameters.
  cgroupSwitch = p:
    let m = match "cgroup_(enable|disable)=(.*)" p;
    in
    if m == null then null
    else { enable = elemAt m 0 == "enable"; controllers = filter isString (split "," (elemAt m 1)); };
in
rec {
  # The memory controller on the vendor kernel (linux_rpi4).
  #
  # Up to rpi-6.6.y the kernel itself disabled it unless the command line
  # said cgroup_enable=memory (raspberrypi/linux#1198, #1950, #3644). From
  # rpi-6.12.y on the kernel no longer does, but the Raspberry Pi device
  # trees put cgroup_disable=memory into /chosen/bootargs
  # (raspberrypi/linux PR #6439), and the downstream-only cgroup_enable=
  # parameter was re-added to undo it (PR #6524). Both are ordinary boot
  # parameters applied in command-line order, so the last one naming
  # `memory` wins (maintainer's explanation in raspberrypi/linux#6980).
  # cgroup_memory=1 is not needed by either kernel; 6.12 reports it as an
  # unknown parameter (same thread), so it is left out.
  #
  # How the parameters reach the kernel on these nodes: the firmware starts
  # U-Boot (config.txt `kernel=u-boot-rpi4.bin`), U-Boot reads extlinux.conf
  # from the generation (boot.loader.generic-extlinux-compatible), sets
  # `bootargs` from its APPEND line (init=... followed by boot.kernelParams)
  # and writes that string into /chosen/bootargs of the device tree it hands
  # to Linux, replacing what was there (u-boot boot/fdt_support.c
  # fdt_chosen()). So neither cmdline.txt nor a cgroup_disable=memory that
  # the firmware or the device tree adds reaches Linux on this path; and if
  # the image were ever booted by the firmware directly, cmdline.txt comes
  # after the device tree's bootargs, so this parameter would still be last.
  # The vendor defconfig's CONFIG_CMDLINE is used only when the bootloader
  # passes no command line at all.
  memoryCgroupParams = [ "cgroup_enable=memory" ];

  # The Pi 4's serial console (mini UART, enable_uart=1 in config.txt) and
  # the HDMI console, then the cgroup switch last.
  kernelParams = [ "console=ttyS0,115200n8" "console=tty1" ] ++ memoryCgroupParams;

  # True when, reading the parameters in order, the memory controller ends
  # up enabled by an explicit cgroup_enable= (the vendor kernel's default is
  # off, or off through its device tree, so no switch at all means off).
  memoryCgroupEnabled = params:
    let
      switches = filter (s: s != null && elem "memory" s.controllers) (map cgroupSwitch params);
    in
    switches != [ ] && (elemAt switches (length switches - 1)).enable;

  # The nixpkgs/nixos-hardware vendor kernel, told apart from the mainline
  # one (which enables the memory controller by default) by its package
  # name (linux-rpi-<version>) or its version (...-stable_<date>, ...+rpt).
  isVendorKernel = { name ? "", version ? "" }:
    hasPrefix "linux-rpi" name
    || match ".*(stable_|rpt).*" version != null;

  # The initrd modules a Pi 4 booting from its SD card or a USB disk needs,
  # on top of nixos-hardware's raspberry-pi-4 list (usbhid, usb-storage, vc4,
  # pcie-brcmstb, reset-raspberrypi). All of them are in bcm2711_defconfig
  # (built in or as modules; modprobe resolves both when the initrd is
  # built): the SD card (sdhci-iproc drives the Pi 4's emmc2 slot,
  # mmc_block), and USB mass storage behind the VL805 xHCI on PCIe
  # (xhci-pci, uas, sd_mod). ext4 comes from the root file system itself.
  initrdModules = [ "mmc_block" "sdhci_iproc" "xhci_pci" "uas" "sd_mod" ];

  # Modules that put into a vendor-kernel initrd have failed its build with
  # "modprobe: FATAL: Module X not found": the aarch64 part of nixpkgs'
  # all-hardware list (Allwinner, Rockchip, PMICs: nixpkgs#111683,
  # nixpkgs#154163, nixos-hardware#2006), the SATA/PATA part of
  # boot.initrd.includeDefaultModules and all-hardware (nixpkgs#391617,
  # nix-community/raspberry-pi-nix#35), the x86 virtualisation drivers of
  # all-hardware, and the TPM drivers of systemd's initrd
  # (nixos-hardware#858). Not every one is missing from every vendor kernel
  # (nixos-hardware#2006's 6.18 build found ahci), but none is needed here,
  # and each one that is missing breaks the image build.
  knownMissingFromVendorKernel = map normalise [
    "sun4i-drm"
    "sun8i-mixer"
    "pwm-sun4i"
    "dw-hdmi"
    "dw-mipi-dsi"
    "rockchipdrm"
    "rockchip-rga"
    "phy-rockchip-pcie"
    "pcie-rockchip-host"
    "panel-simple"
    "pwm-bl"
    "axp20x-ac-power"
    "axp20x-battery"
    "pinctrl-axp209"
    "mp8859"
    "xhci-pci-renesas"
    "analogix-dp"
    "analogix-anx6345"
    "ahci"
    "ata_piix"
    "sata_nv"
    "sata_via"
    "sata_sis"
    "sata_uli"
    "pata_marvell"
    "hpsa"
    "3w-9xxx"
    "3w-xxxx"
    "aic79xx"
    "aic7xxx"
    "arcmsr"
    "mptspi"
    "vmxnet3"
    "vmw_balloon"
    "vmwgfx"
    "hv_storvsc"
    "tpm-crb"
    "tpm-tis"
  ];

  # The names of `modules` that are on that list, as given.
  initrdProblems = modules: filter (m: elem (normalise m) knownMissingFromVendorKernel) modules;
}
