# edgewatch.monitoring: Prometheus, Loki and Grafana on one host. The
# configs are rendered by nix/lib/monitoring (nix/OBSERVABILITY.md): in the
# agent mode (default) the nodes remote-write here; in the scrape mode this
# Prometheus scrapes them. Rules and dashboards are the ones
# .ci/observability-checks.sh tests. With edgewatch.monitoring.alerts, an
# Alertmanager on loopback mails the firing alerts through the site's SMTP
# relay (nix/lib/monitoring/alertmanager.nix).
{ config, lib, pkgs, ... }:
let
  cfg = config.edgewatch.monitoring;
  alerts = cfg.alerts;
  built = config.edgewatch.built;
  host = config.edgewatch.host;
  obs = config.edgewatch.observability;
  siteAlerts = config.edgewatch.site.alerts or { };
  edgeLib = import ../../nix/lib;
  mon = edgeLib.monitoring;
  ports = edgeLib.site.ports;

  rulesFile = pkgs.writeText "edgewatch-rules.json" (builtins.toJSON (mon.hosts.rulesFor built));
  # SMTP_PASSWORD=..., outside the store; only needed with a username.
  alertsEnvFile = "${cfg.secretsDir}/alertmanager.env";
in
{
  options.edgewatch.monitoring = {
    enable = lib.mkEnableOption "the edgewatch monitoring host profile";
    secretsDir = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/edgewatch/secrets";
      description = ''
        Where `grafana-admin-password`, `grafana-secret-key` and (with
        `alerts.username`) `alertmanager.env` live, outside the store.
      '';
    };

    # Defaults come from the site description's `alerts` attrset, so one
    # site file (nixos/site.nix) holds the whole site.
    alerts = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = siteAlerts != { };
        defaultText = lib.literalExpression "edgewatch.site ? alerts";
        description = ''
          Mail the Prometheus alerts (nix/lib/monitoring/rules.nix) through
          the site's SMTP relay: Alertmanager on `127.0.0.1:${toString ports.alertmanager}`,
          one e-mail per alert name and node, resolved alerts mailed too,
          critical ones repeated hourly while they fire, and a node's other
          alerts held back while it is down (NodeDown).
        '';
      };
      to = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = siteAlerts.to or [ ];
        example = [ "ops@site-a.example" ];
        description = "Recipients of the alert e-mails (at least one).";
      };
      from = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = siteAlerts.from or null;
        example = "edgewatch-monitor@site-a.example";
        description = "Sender address of the alert e-mails; the relay must accept it.";
      };
      smarthost = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = siteAlerts.smarthost or null;
        example = "smtp.site-a.example:587";
        description = ''
          The site's SMTP relay as `host:port`: port 587 with STARTTLS, or
          465 with TLS from the start.
        '';
      };
      username = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = siteAlerts.username or null;
        description = ''
          SMTP AUTH user, or `null` for a relay that takes mail without
          authentication. When set, the password is read at service start
          from `<secretsDir>/alertmanager.env`, one line
          `SMTP_PASSWORD=...` (root-only is fine: systemd reads it before
          dropping privileges). It is pasted into a JSON string, so it must
          not contain `"` or `\`.
        '';
      };
      requireTls = lib.mkOption {
        type = lib.types.bool;
        default = siteAlerts.requireTls or true;
        description = ''
          Refuse to send unless the relay offers STARTTLS (or TLS from the
          start on 465). Must stay `true` with a `username`.
        '';
      };
      caFile = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = siteAlerts.caFile or null;
        description = ''
          CA certificate of the relay, if it is not signed by a public CA.
          The service runs as a dynamic user: the file must be
          world-readable (it is not a secret).
        '';
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = host.role == "monitoring";
        message = "edgewatch.monitoring is for the host with role \"monitoring\"; ${host.name} has role \"${host.role}\".";
      }
      {
        assertion = !alerts.enable || (alerts.to != [ ] && alerts.from != null && alerts.smarthost != null);
        message = "edgewatch.monitoring.alerts needs `to` (at least one address), `from` and `smarthost` (host:port of the site's SMTP relay).";
      }
    ];
    edgewatch.base.enable = true;
    edgewatch.rollout = {
      enable = true;
      gate.units = [ "sshd.service" "prometheus.service" "loki.service" "grafana.service" ]
        ++ lib.optional alerts.enable "alertmanager.service";
      # Ready once it has loaded the config with the password substituted.
      gate.readyzUrls = lib.optional alerts.enable "http://127.0.0.1:${toString ports.alertmanager}/-/ready";
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
        alertmanager = alerts.enable;
      });
    };

    # nixos/modules/services/monitoring/prometheus/alertmanager.nix: the
    # configuration is written as JSON and checked with `amtool
    # check-config` at build time; at start, envsubst replaces
    # $SMTP_PASSWORD with the value from environmentFile (a systemd
    # EnvironmentFile), into a file in the unit's private /tmp. The service
    # runs as a dynamic user.
    services.prometheus.alertmanager = lib.mkIf alerts.enable {
      enable = true;
      listenAddress = "127.0.0.1";
      port = ports.alertmanager;
      extraFlags = mon.alertmanager.flags;
      environmentFile = if alerts.username != null then alertsEnvFile else null;
      configuration = mon.hosts.alertmanagerFor {
        inherit built;
        settings = { inherit (alerts) to from smarthost username requireTls caFile; };
      };
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
