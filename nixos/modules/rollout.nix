# edgewatch.rollout: the node-side half of the health-gated rollout
# (nix/deploy/activate.sh, nix/deploy/health-gate.sh). It installs
# `edgewatch-activate` and this generation's `edgewatch-health-gate`, whose
# checks are fixed here at build time, so each generation judges its own
# health. The deployer side is `nix run .#rollout` (nix/deploy/rollout.sh).
{ config, lib, pkgs, ... }:
let
  cfg = config.edgewatch.rollout;

  healthGate = pkgs.writeShellApplication {
    name = "edgewatch-health-gate";
    runtimeInputs = with pkgs; [ coreutils gawk curl systemd ]
      ++ lib.optional config.services.k3s.enable config.services.k3s.package;
    text = ''
      export GATE_TIMEOUT=''${GATE_TIMEOUT:-${toString cfg.gate.timeout}}
      export GATE_UNITS=${lib.escapeShellArg (lib.concatStringsSep " " cfg.gate.units)}
      export GATE_K3S_NODE=${if cfg.gate.k3sNode then "1" else "0"}
      export GATE_KUBECONFIG=${lib.escapeShellArg cfg.gate.kubeconfig}
      export GATE_DETECTOR_PODS=${if cfg.gate.detectorPods then "1" else "0"}
      export GATE_READYZ_URLS=${lib.escapeShellArg (lib.concatStringsSep " " cfg.gate.readyzUrls)}
      export GATE_PREFLIGHT=${lib.escapeShellArg (if cfg.gate.preflight == null then "" else cfg.gate.preflight)}
      export NODE_NAME=${lib.escapeShellArg config.networking.hostName}
      ${builtins.readFile ../../nix/deploy/health-gate.sh}
    '';
  };

  activate = pkgs.writeShellApplication {
    name = "edgewatch-activate";
    # nix-env comes from the running system's Nix.
    runtimeInputs = with pkgs; [ coreutils gnused config.nix.package ];
    text = ''
      export CONFIRM_TIMEOUT=''${CONFIRM_TIMEOUT:-${toString cfg.confirmTimeout}}
      ${builtins.readFile ../../nix/deploy/activate.sh}
    '';
  };
in
{
  options.edgewatch.rollout = {
    enable = lib.mkEnableOption "the node side of edgewatch's health-gated rollout";

    confirmTimeout = lib.mkOption {
      type = lib.types.ints.positive;
      default = 120;
      description = ''
        Seconds the node waits, after its health gate passed, for the deployer
        to confirm over a new SSH connection before it rolls itself back.
      '';
    };

    gate = {
      timeout = lib.mkOption {
        type = lib.types.ints.positive;
        default = 300;
        description = "Seconds the new generation has to become healthy.";
      };
      units = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ "sshd.service" ];
        description = "Units that must be active (besides: no unit may be failed).";
      };
      k3sNode = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Require this host's k3s Node to be Ready.";
      };
      kubeconfig = lib.mkOption {
        type = lib.types.str;
        default = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig";
        description = ''
          Kubeconfig for the k3s checks. The default is the agent's kubelet
          credential, which the Node authorizer lets read its own Node and the
          pods bound to it: no admin credential needs to live on a Pi.
        '';
      };
      detectorPods = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Require the edgewatch pods on this node to be Ready (their readiness probe is /readyz).";
      };
      preflight = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "/nix/store/...-edgewatch-node-preflight/bin/edgewatch-node-preflight";
        description = ''
          This generation's node preflight (set by nixos/modules/node-preflight.nix).
          The gate runs it first, so an unhealthy node is reported by the
          check that failed (and its fix) rather than by its consequence
          (k3s not running, the Node not Ready).
        '';
      };
      readyzUrls = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        example = [ "http://127.0.0.1:9870/readyz" ];
        description = "URLs that must answer 2xx.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ healthGate activate ];
    system.build.edgewatchHealthGate = healthGate;
  };
}
