# Observability renderers (builtins only, like the rest of nix/lib): what the
# NixOS profiles feed to services.prometheus (agent and central),
# services.prometheus.exporters.node, services.promtail,
# services.grafana.provision and services.prometheus.alertmanager, and what
# .ci/observability-checks.sh renders with test addresses and runs against
# real Prometheus, node exporter and Alertmanager.
# Design and figures: nix/OBSERVABILITY.md.
{ helpers ? import ../helpers.nix, sitePorts ? (import ../site.nix { inherit helpers; }).ports }:
let
  series = import ./series.nix;
  relabel = import ./relabel.nix { inherit helpers; };
  agent = import ./agent.nix { inherit helpers series relabel; };
  central = import ./central.nix { inherit helpers series relabel; };
  rules = import ./rules.nix { inherit helpers; };
  promtail = import ./promtail.nix { inherit helpers; };
  alertmanager = import ./alertmanager.nix { inherit helpers; };
  ports = { agent = 9095; promtail = 9080; };
in
{
  inherit series relabel agent central rules promtail alertmanager ports;
  nodeExporter = import ./node-exporter.nix;
  grafana = import ./grafana.nix;
  hosts = import ./hosts.nix { inherit agent central rules promtail alertmanager sitePorts; agentPort = ports.agent; };
}
