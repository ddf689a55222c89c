# Placeholder hardware for the example site's k3s server and monitoring host
# (x86_64 machines the example cannot know). Replace this file's use in
# nixos/hosts.nix with each machine's real hardware-configuration.nix
# (`nixos-generate-config --show-hardware-config`).
{ lib, ... }:
{
  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
  fileSystems."/" = lib.mkDefault { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  fileSystems."/boot" = lib.mkDefault { device = "/dev/disk/by-label/ESP"; fsType = "vfat"; };
  boot.loader.systemd-boot = {
    enable = lib.mkDefault true;
    configurationLimit = lib.mkDefault 10;
  };
  boot.loader.efi.canTouchEfiVariables = lib.mkDefault false;
}
