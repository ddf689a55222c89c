# A built site (nix/lib/site.nix `build`) -> the configs of each host, exactly
# as the NixOS modules (nixos/modules/observability.nix,
# nixos/profiles/monitoring.nix) pass them to services.*. Kept here, pure, so
# .ci/observability-checks.sh renders the real site's configs and runs
# promtool and amtool on them.
{ agent, central, rules, promtail, alertmanager, sitePorts, agentPort }:
let
  inherit (builtins) attrNames filter;
  monitorOf = built: built.hosts.${built.monitor};
in
{
  agentFor = { built, name, scrapeInterval ? "15s", camera ? "cam0", cadvisor ? null }:
    let h = built.hosts.${name};
    in
    agent.render {
      node = name;
      camera = if h.camera then camera else null;
      remoteWriteUrl = "http://${(monitorOf built).address}:${toString sitePorts.prometheus}/api/v1/write";
      inherit scrapeInterval;
      nodeExporter = "127.0.0.1:${toString sitePorts.nodeExporter}";
      # hostPorts of the DaemonSet (k3s) or the units' 0.0.0.0 listeners
      # (systemd runtime): the node's address reaches both.
      detector = "${h.address}:${toString sitePorts.detector}";
      watchdog = "${h.address}:${toString sitePorts.watchdog}";
      self = "127.0.0.1:${toString agentPort}";
      cadvisor =
        if cadvisor == null then null
        else {
          target = "${h.address}:${toString sitePorts.kubelet}";
          serverName = name;
          inherit (cadvisor) tokenFile caFile;
        };
    };

  # alertmanager: send the alerts to the monitoring host's own Alertmanager
  # (alertmanagerFor), which listens on loopback only.
  centralFor = { built, ruleFiles, mode ? "agent", scrapeInterval ? "15s", camera ? "cam0", alertmanager ? false }:
    central.render {
      node = built.monitor;
      self = "127.0.0.1:${toString sitePorts.prometheus}";
      nodeExporter = "127.0.0.1:${toString sitePorts.nodeExporter}";
      inherit mode scrapeInterval ruleFiles;
      hosts = map
        (name: {
          inherit name;
          inherit (built.hosts.${name}) address;
          camera = if built.hosts.${name}.camera then camera else null;
        })
        (filter (n: n != built.monitor) (attrNames built.hosts));
      ports = { inherit (sitePorts) nodeExporter detector watchdog; };
      alertmanagers = if alertmanager then [ "127.0.0.1:${toString sitePorts.alertmanager}" ] else [ ];
    };

  # The monitoring host's Alertmanager: `settings` are alertmanager.render's
  # arguments (to, from, smarthost, username, ...); the EHLO name is the
  # host's FQDN unless given.
  alertmanagerFor = { built, settings }:
    alertmanager.render ({ hello = built.hosts.${built.monitor}.fqdn; } // settings);

  # NodeDown's reference list is every host of the site.
  rulesFor = built: rules.render { nodes = attrNames built.hosts; };

  promtailFor = { built, name, pods, camera ? "cam0" }:
    let h = built.hosts.${name};
    in
    promtail.render {
      node = name;
      inherit (h) role lokiPushUrl;
      camera = if h.camera then camera else null;
      inherit pods;
    };
}
