# services.edgewatch.detector: `edgewatch detect` as a hardened systemd unit
# (camera -> model -> clips in the spool). Used directly by nodes with
# `edgewatch.node.runtime = "systemd"`; with the default k3s runtime the same
# binary runs in the DaemonSet of k3s/ instead.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.edgewatch.detector;
  role = import ./role.nix { inherit lib pkgs; };
  unit = (import ../../nix/lib/units.nix).detector;
  args = { role = "detector"; inherit (unit) subcommand defaultListen; };
in
{
  options.services.edgewatch.detector = role.mkOptions args // {
    device = lib.mkOption {
      type = lib.types.str;
      default = "/dev/video0";
      description = ''
        The V4L2 device the unit may open (systemd `DeviceAllow=`), the only
        device node it gets. Keep it equal to `source.device` in
        {option}`settings` (edgewatch's default is also /dev/video0).
      '';
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (role.mkConfig (args // { inherit cfg; }))
    {
      systemd.services.edgewatch-detector.serviceConfig = {
        # A private /dev would hide the camera: allow exactly one device.
        PrivateDevices = false;
        DeviceAllow = [ "${cfg.device} rw" ];
        SupplementaryGroups = [ "video" ];
        # The cache (model.cache-dir) and the frame journal's RuntimeDirectory
        # (in memory, and kept when the unit restarts after a crash, so the new
        # process can still cut the open event's clip): nix/lib/units.nix.
        inherit (unit.directories) CacheDirectory RuntimeDirectory RuntimeDirectoryPreserve;
      };
      services.edgewatch.detector.settings = lib.mapAttrsRecursive (_: lib.mkDefault) unit.settings;
    }
  ]);
}
