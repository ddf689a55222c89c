# The edgewatch NixOS modules, by flake attribute name (path-derived, srvos
# habit). Hardware modules are not here: nixos/hosts.nix adds them per host.
{
  detector = ./modules/detector.nix;
  watchdog = ./modules/watchdog.nix;
  site = ./modules/site.nix;
  rollout = ./modules/rollout.nix;
  video-device-plugin = ./modules/video-device-plugin.nix;
  node-preflight = ./modules/node-preflight.nix;
  k8s-secrets = ./modules/k8s-secrets.nix;
  observability = ./modules/observability.nix;
  profiles-base = ./profiles/base.nix;
  profiles-node = ./profiles/node.nix;
  profiles-server = ./profiles/server.nix;
  profiles-monitoring = ./profiles/monitoring.nix;
}
