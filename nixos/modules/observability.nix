# edgewatch.observability: metrics and logs of one host, rendered by
# nix/lib/monitoring (design and measured figures: nix/OBSERVABILITY.md).
#
# Every host: node exporter filtered at the source, bound to loopback in the
# agent mode (open on the LAN only in the central-scrape mode), and promtail
# (journal; pods on k3s hosts). Hosts other than the monitoring host, in the
# agent mode (default): a Prometheus agent that scrapes node exporter, the
# detector and watchdog (camera nodes), cAdvisor in the kubelet (k3s hosts)
# and itself, and remote-writes the kept series to the monitoring host. The
# monitoring host's side is nixos/profiles/monitoring.nix.
#
# Options checked against nixpkgs' modules (read in a nixpkgs checkout close
# to the nixos-25.11 pin, see nix/OBSERVABILITY.md):
#   nixos/modules/services/monitoring/prometheus/default.nix
#     services.prometheus.{enable,enableAgentMode,listenAddress,port,
#     configText,checkConfig,extraFlags,stateDir}: enableAgentMode adds
#     --enable-feature=agent and no storage flag; configText replaces the
#     generated prometheus.yml; checkConfig = "syntax-only" runs
#     `promtool check config --syntax-only` at build time.
#   nixos/modules/services/monitoring/prometheus/exporters.nix and
#   exporters/node.nix: exporters.node.{enable,port,listenAddress,
#     enabledCollectors (-> --collector.X),extraFlags}.
#   nixos/modules/services/logging/promtail.nix: services.promtail.
#     {enable,configuration (JSON)}; runs as user promtail, with the
#     systemd-journal group when a journal job exists.
{ config, lib, ... }:
let
  cfg = config.edgewatch.observability;
  host = config.edgewatch.host;
  built = config.edgewatch.built;
  site = config.edgewatch.site;
  edgeLib = import ../../nix/lib;
  mon = edgeLib.monitoring;
  ports = edgeLib.site.ports;

  isMonitor = host.role == "monitoring";
  agentMode = cfg.mode == "agent";
in
{
  options.edgewatch.observability = {
    enable = lib.mkEnableOption "edgewatch's metrics and log shipping on this host";

    mode = lib.mkOption {
      type = lib.types.enum [ "agent" "scrape" ];
      default = (site.metrics or { }).mode or "agent";
      defaultText = lib.literalExpression ''edgewatch.site.metrics.mode or "agent"'';
      description = ''
        "agent": each host runs a Prometheus agent that remote-writes the
        kept series to the monitoring host (thin or flaky links: the agent
        buffers in its WAL). "scrape": the monitoring host scrapes every host
        over the network (good links). Set it site-wide in the site
        description (`metrics.mode`), so both ends agree.
      '';
    };

    scrapeInterval = lib.mkOption {
      type = lib.types.str;
      default = (site.metrics or { }).scrapeInterval or "15s";
      description = "Scrape interval of the agent (or of the central scrape).";
    };

    camera = lib.mkOption {
      type = lib.types.str;
      default = "cam0";
      description = "The `camera` label of the detector's and watchdog's series and logs (edgewatch's `camera` key).";
    };

    textfileDirectory = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/prometheus-node-exporter-text";
      description = "node exporter's textfile collector directory (Pi throttling flags).";
    };

    cadvisor = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = config.services.k3s.enable;
        defaultText = lib.literalExpression "config.services.k3s.enable";
        description = ''
          Scrape the kubelet's cAdvisor endpoint (:10250/metrics/cadvisor,
          TLS) for the edgewatch containers' CPU, memory and CFS throttling.
          Needs {option}`tokenFile`.
        '';
      };
      tokenFile = lib.mkOption {
        type = lib.types.str;
        default = "/var/lib/edgewatch/secrets/kubelet-metrics-token";
        description = ''
          Bearer token of a ServiceAccount allowed to `get` `nodes/metrics`,
          readable by the prometheus user (root:prometheus, mode 0440).
          Prometheus reads it at every scrape, so it can appear or rotate
          without a restart; until it exists the cadvisor target is down.
        '';
      };
      caFile = lib.mkOption {
        type = lib.types.str;
        default = "/var/lib/rancher/k3s/agent/server-ca.crt";
        description = "CA that signed the kubelet's serving certificate (k3s: the server CA).";
      };
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      services.prometheus.exporters.node = {
        enable = true;
        port = ports.nodeExporter;
        # Agent mode: only the local agent (or, on the monitoring host, the
        # local Prometheus) reads it.
        listenAddress = if agentMode then "127.0.0.1" else "0.0.0.0";
        enabledCollectors = mon.nodeExporter.collectors;
        extraFlags = mon.nodeExporter.extraFlags { inherit (cfg) textfileDirectory; };
      };
      systemd.tmpfiles.settings."10-edgewatch-textfile".${cfg.textfileDirectory}.d = {
        mode = "0755";
        user = "root";
        group = "root";
      };

      services.promtail = {
        enable = true;
        configuration = mon.hosts.promtailFor {
          inherit built;
          name = host.name;
          inherit (cfg) camera;
          pods = config.services.k3s.enable;
        };
      };
      # Container logs are root:root 0640 (kubelet/containerd); promtail runs
      # as its own user. A default ACL on /var/log/pods lets it read the
      # files containerd creates later. Unverified here (needs a k3s VM).
      systemd.tmpfiles.rules = lib.mkIf config.services.k3s.enable [
        "d /var/log/pods 0755 root root -"
        "A+ /var/log/pods - - - - u:promtail:rX,d:u:promtail:rX"
      ];
    }

    (lib.mkIf (agentMode && !isMonitor) {
      # The `--agent` below must reach Prometheus exactly once: kingpin
      # refuses a repeated flag ("flag 'agent' cannot be repeated"), so the
      # day the pinned module passes `--agent` itself (NixOS/nixpkgs PR
      # #491132, after our pin) the agent would stop on every host. This
      # fails the evaluation instead, saying what to remove.
      assertions = [{
        assertion =
          let
            words = builtins.filter builtins.isString
              (builtins.split "[[:space:]\\\\]+" (toString config.systemd.services.prometheus.serviceConfig.ExecStart));
          in
          lib.count (w: w == "--agent") words == 1;
        message = ''
          ${host.name}: the Prometheus command line has `--agent` more than once (or not at all). nixpkgs'
          prometheus module passes `--agent` for enableAgentMode since PR #491132; remove "--agent" from
          services.prometheus.extraFlags in nixos/modules/observability.nix (nix/KNOWN-ISSUES.md).'';
      }];
      services.prometheus = {
        enable = true;
        enableAgentMode = true;
        listenAddress = "127.0.0.1";
        port = mon.ports.agent;
        configText = builtins.toJSON (mon.hosts.agentFor {
          inherit built;
          name = host.name;
          inherit (cfg) scrapeInterval camera;
          cadvisor = if cfg.cadvisor.enable then { inherit (cfg.cadvisor) tokenFile caFile; } else null;
        });
        # The token and CA exist only on the node, not in the build sandbox.
        checkConfig = "syntax-only";
        # enableAgentMode at our pin passes `--enable-feature=agent`, which
        # Prometheus 3 (nixos-25.11 ships 3.x) ignores with a warning: it
        # would run as a full server (NixOS/nixpkgs issue #485366, fixed by
        # PR #491132 on 2026-02-16, after the pin). `--agent` here selects
        # the mode; enableAgentMode still keeps the server-only flags away.
        # Drop it when the pin includes that PR (kingpin refuses a repeated
        # flag).
        extraFlags = [ "--agent" ]
          ++ mon.agent.flags { walDir = "/var/lib/${config.services.prometheus.stateDir}/data-agent"; };
      };
    })
  ]);
}
