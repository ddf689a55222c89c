# services.edgewatch.detector: `edgewatch detect` as a hardened systemd unit
# (camera -> model -> clips in the spool). Used directly by nodes with
# `edgewatch.node.runtime = "systemd"`; with the default k3s runtime the same
# binary runs in the DaemonSet of k3s/ instead.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.edgewatch.detector;
  role = import ./role.nix { inherit lib pkgs; };
  args = { role = "detector"; subcommand = "detect"; defaultListen = "0.0.0.0:9870"; };
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
        # model.cache-dir defaults to /var/cache/edgewatch/model.
        CacheDirectory = "edgewatch";
        # The frame journal (clip.frame-journal, below): in memory, and kept
        # when the unit restarts after a crash, so the new process can still
        # cut the open event's clip (systemd.exec(5), RuntimeDirectoryPreserve).
        RuntimeDirectory = "edgewatch-detector";
        RuntimeDirectoryPreserve = "restart";
      };
      services.edgewatch.detector.settings.clip.frame-journal = lib.mkDefault "/run/edgewatch-detector/frames";
    }
  ]);
}
