# edgewatch.videoDevicePlugin: hands /dev/video0 to exactly one pod without
# `privileged`, by running squat/generic-device-plugin as a host service.
#
# Why a device plugin: a hostPath mount of /dev/video0 gives a container the
# device node but not the device-cgroup permission to open it, and
# supplementalGroups cannot change that; only `privileged: true` or a device
# plugin (whose Allocate response makes the runtime add the device to the
# container) can. k3s/README.md compares the options.
#
# Why on the host and not as a DaemonSet: the plugin needs the kubelet's
# socket directory and /dev, which as a pod means a privileged container in
# kube-system plus one more image to build and preload. As a unit it gets
# exactly those two paths and nothing else.
{ config, lib, pkgs, ... }:
let
  cfg = config.edgewatch.videoDevicePlugin;
  spec = builtins.toJSON {
    name = "video";
    groups = map (p: { paths = [{ path = p; }]; }) cfg.devices;
  };
in
{
  options.edgewatch.videoDevicePlugin = {
    enable = lib.mkEnableOption "the generic device plugin advertising the camera as `squat.ai/video`";
    package = lib.mkPackageOption pkgs "generic-device-plugin" { };
    devices = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ "/dev/video0" ];
      description = "Device nodes advertised, one allocatable `squat.ai/video` each.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.edgewatch-video-device-plugin = {
      description = "Kubernetes device plugin for the camera (squat.ai/video)";
      wantedBy = [ "multi-user.target" ];
      # The kubelet (inside k3s) creates kubelet.sock; the plugin registers
      # there and re-registers when the kubelet restarts.
      after = [ "k3s.service" ];
      bindsTo = [ "k3s.service" ];
      serviceConfig = {
        ExecStart = lib.escapeShellArgs [
          (lib.getExe cfg.package)
          "--device"
          spec
          "--plugin-directory"
          "/var/lib/kubelet/device-plugins"
          "--listen"
          "127.0.0.1:8081"
        ];
        Restart = "always";
        RestartSec = "5s";
        # It runs as root (it must create a socket the kubelet, root, trusts)
        # but sees only the socket directory and the advertised devices.
        ProtectSystem = "strict";
        ReadWritePaths = [ "/var/lib/kubelet/device-plugins" ];
        ProtectHome = true;
        PrivateTmp = true;
        PrivateNetwork = false; # metrics on 127.0.0.1:8081
        DevicePolicy = "closed";
        DeviceAllow = map (d: "${d} r") cfg.devices;
        CapabilityBoundingSet = [ "" ];
        NoNewPrivileges = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectControlGroups = true;
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
      };
    };
  };
}
