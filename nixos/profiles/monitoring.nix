# edgewatch.monitoring: Prometheus, Loki and Grafana on one host. The
# configs are rendered by nix/lib/monitoring (nix/OBSERVABILITY.md): in the
# agent mode (default) the nodes remote-write here; in the scrape mode this
# Prometheus scrapes them. Rules and dashboards are the ones
# .ci/observability-checks.sh tests.
{ config, lib, pkgs, ... }:
let
  cfg = config.edgewatch.monitoring;
  built = config.edgewatch.built;
  host = config.edgewatch.host;
  obs = config.edgewatch.observability;
  edgeLib = import ../../nix/lib;
  mon = edgeLib.monitoring;
  ports = edgeLib.site.ports;

  rulesFile = pkgs.writeText "edgewatch-rules.json" (builtins.toJSON (mon.hosts.rulesFor built));
in
{
  options.edgewatch.monitoring = {
    enable = lib.mkEnableOption "the edgewatch monitoring host profile";
    secretsDir = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/edgewatch/secrets";
      description = "Where grafana-admin-password and grafana-secret-key live (outside the store).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = host.role == "monitoring";
      message = "edgewatch.monitoring is for the host with role \"monitoring\"; ${host.name} has role \"${host.role}\".";
    }];
    edgewatch.base.enable = true;
    edgewatch.rollout = {
      enable = true;
      gate.units = [ "sshd.service" "prometheus.service" "loki.service" "grafana.service" ];
    };

    # nixos/modules/services/monitoring/prometheus/default.nix: configText
    # replaces the generated prometheus.yml; checkConfig (default true) runs
    # `promtool check config` on it at build time, which also checks the
    # rule file it names.
    services.prometheus = {
      enable = true;
      listenAddress = "0.0.0.0";
      port = ports.prometheus;
      retentionTime = "15d";
      extraFlags = lib.optionals (obs.mode == "agent") mon.central.flags;
      configText = builtins.toJSON (mon.hosts.centralFor {
        inherit built;
        inherit (obs) mode scrapeInterval camera;
        ruleFiles = [ "${rulesFile}" ];
      });
    };

    # nixos/modules/services/monitoring/loki.nix; the module runs
    # `loki -verify-config` on this at build time. Single-binary, filesystem
    # storage, as Loki 3's local example configuration.
    services.loki = {
      enable = true;
      configuration = {
        auth_enabled = false;
        server = { http_listen_port = ports.loki; grpc_listen_port = 9096; };
        common = {
          instance_addr = "127.0.0.1";
          path_prefix = "/var/lib/loki";
          storage.filesystem = { chunks_directory = "/var/lib/loki/chunks"; rules_directory = "/var/lib/loki/rules"; };
          replication_factor = 1;
          ring.kvstore.store = "inmemory";
        };
        schema_config.configs = [{
          from = "2025-01-01";
          store = "tsdb";
          object_store = "filesystem";
          schema = "v13";
          index = { prefix = "index_"; period = "24h"; };
        }];
        limits_config.retention_period = "336h";
        compactor = {
          working_directory = "/var/lib/loki/compactor";
          retention_enabled = true;
          delete_request_store = "filesystem";
        };
      };
    };

    # nixos/modules/services/monitoring/grafana.nix. Secrets through Grafana's
    # $__file{} provider, so they never enter the store.
    services.grafana = {
      enable = true;
      settings = {
        server = { http_addr = "0.0.0.0"; http_port = ports.grafana; domain = host.fqdn; };
        security = {
          admin_user = "admin";
          admin_password = "$__file{${cfg.secretsDir}/grafana-admin-password}";
          secret_key = "$__file{${cfg.secretsDir}/grafana-secret-key}";
        };
        analytics.reporting_enabled = false;
      };
      # Datasource uids are the ones nix/dashboards/*.json refer to.
      provision = {
        enable = true;
        datasources.settings = mon.grafana.datasources {
          prometheusUrl = "http://127.0.0.1:${toString ports.prometheus}";
          lokiUrl = "http://127.0.0.1:${toString ports.loki}";
          inherit (obs) scrapeInterval;
        };
        dashboards.settings = mon.grafana.dashboards { path = ../../nix/dashboards; };
      };
    };
  };
}
