# edgewatch.nodePreflight: a node checks, before its k3s agent starts, what
# its workload needs and its image cannot prove at build time
# (./node-preflight.sh: cgroup controllers, camera, throttling flags, clock,
# spool space, page size). A node that fails does not start k3s, so it never becomes
# Ready; every failure is in the journal with its fix, in
# edgewatch_preflight_ok{check} for node exporter, and in the health gate
# (nixos/modules/rollout.nix), so a deploy that breaks a node rolls back with
# the failed check named.
{ config, lib, pkgs, ... }:
let
  cfg = config.edgewatch.nodePreflight;
  host = config.edgewatch.host;

  checks =
    lib.optionals cfg.cgroups [ "cgroup_memory" "cgroup_cpu" "cgroup_pids" ]
    ++ lib.optional cfg.camera "camera"
    ++ lib.optional cfg.throttled "throttled"
    ++ lib.optional cfg.clock "clock"
    ++ lib.optional cfg.camera "spool"
    # Where the detector runs: its jemalloc is built for 4 KiB pages.
    ++ lib.optional cfg.camera "page_size";

  deviceName = d:
    if lib.hasPrefix "/dev/" d then lib.removePrefix "/dev/" d
    else throw "edgewatch.nodePreflight.videoDevices: ${d} is not under /dev";

  # The checks and paths are fixed here, so each generation's preflight (and
  # the health gate that runs it) checks what that generation needs.
  preflight = pkgs.writeShellApplication {
    name = "edgewatch-node-preflight";
    # v4l2-ctl without the Qt viewers (withGUI: pkgs/by-name/v4/v4l-utils).
    runtimeInputs = with pkgs; [ coreutils gawk gnugrep systemd (v4l-utils.override { withGUI = false; }) ];
    text = ''
      export PREFLIGHT_CHECKS=${lib.escapeShellArg (lib.concatStringsSep " " checks)}
      export VIDEO_DEVICES=${lib.escapeShellArg (lib.concatMapStringsSep " " deviceName cfg.videoDevices)}
      export SPOOL_DIR=${lib.escapeShellArg cfg.spoolDirectory}
      export SPOOL_MIN_FREE_MIB=${toString cfg.minFreeMiB}
      export TEXTFILE_DIR=${lib.escapeShellArg config.edgewatch.observability.textfileDirectory}
      ${builtins.readFile ./node-preflight.sh}
    '';
  };
in
{
  options.edgewatch.nodePreflight = {
    enable = lib.mkEnableOption "the node preflight checks before the k3s agent starts";

    cgroups = lib.mkOption {
      type = lib.types.bool;
      default = config.services.k3s.enable;
      defaultText = lib.literalExpression "config.services.k3s.enable";
      description = "Check the memory, cpu and pids controllers of cgroup v2 (k3s needs them).";
    };
    camera = lib.mkOption {
      type = lib.types.bool;
      default = host.camera;
      defaultText = lib.literalExpression "config.edgewatch.host.camera";
      description = "Check the camera devices and the spool's free space.";
    };
    throttled = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Check that the Raspberry Pi firmware's throttling flags are readable (set by nixos/hardware/pi4.nix).";
    };
    clock = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Check that the clock is NTP-synchronised.";
    };
    videoDevices = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = config.edgewatch.videoDevicePlugin.devices;
      defaultText = lib.literalExpression "config.edgewatch.videoDevicePlugin.devices";
      description = "Camera device nodes (under /dev) that must be V4L2 capture devices.";
    };
    spoolDirectory = lib.mkOption {
      type = lib.types.str;
      default = "/var/spool/edgewatch";
      description = "The clip spool (the DaemonSet's hostPath).";
    };
    minFreeMiB = lib.mkOption {
      type = lib.types.ints.positive;
      default = 512;
      description = ''
        Free space the spool's file system must have. Above the watchdog's
        eviction threshold (spool-min-free, 256 MiB) and the detector's
        refusal to write clips (clip.min-free-space, 64 MiB), so a node that
        passes can record.
      '';
    };
    waitSeconds = lib.mkOption {
      type = lib.types.ints.unsigned;
      default = 180;
      description = ''
        At boot, how long failing checks are retried (every 5 s) before the
        unit fails: USB cameras enumerate and NTP synchronises after the
        network is up.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      # The script runs every check when given none.
      assertion = checks != [ ];
      message = "edgewatch.nodePreflight is enabled with no check selected; disable it instead.";
    }];

    systemd.services.edgewatch-node-preflight = {
      description = "edgewatch node preflight (cgroups, camera, clock, spool)";
      wantedBy = [ "multi-user.target" ];
      before = [ "k3s.service" ];
      wants = [ "time-sync.target" "network-online.target" ];
      after = [ "time-sync.target" "network-online.target" "systemd-tmpfiles-setup.service" ];
      # A switch does not re-run it (that would restart k3s, which requires
      # it): the health gate runs the new generation's checks instead, and
      # the next boot runs this unit again.
      restartIfChanged = false;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${lib.getExe preflight} --wait ${toString cfg.waitSeconds}";
        TimeoutStartSec = cfg.waitSeconds + 60;
      };
    };

    # Fresh metrics while the node runs (the spool fills, NTP can be lost);
    # a separate unit, so these runs never touch k3s.
    systemd.services.edgewatch-node-preflight-metrics = {
      description = "edgewatch node preflight, for the metrics";
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${lib.getExe preflight}";
        # A failed check is a result here, not a unit failure.
        SuccessExitStatus = "1";
      };
    };
    systemd.timers.edgewatch-node-preflight-metrics = {
      wantedBy = [ "timers.target" ];
      timerConfig = { OnBootSec = "5min"; OnUnitActiveSec = "5min"; };
    };

    # k3s starts only after the checks passed; a node that fails them is
    # never Ready (systemd.unit(5): Requires= with After=).
    systemd.services.k3s = lib.mkIf config.services.k3s.enable {
      requires = [ "edgewatch-node-preflight.service" ];
      after = [ "edgewatch-node-preflight.service" ];
    };

    environment.systemPackages = [ preflight ];
    system.build.edgewatchNodePreflight = preflight;
    edgewatch.rollout.gate.preflight = lib.getExe preflight;
  };
}
