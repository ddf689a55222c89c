# nixosConfigurations for the site in ./site.nix: one system per host,
# profile chosen by role, hardware by role. Nothing here is per-host by hand.
{ nixpkgs, nixos-hardware, edgewatchModule }:
let
  site = import ./site.nix;
  built = (import ../nix/lib).site.build site;

  profile = {
    node = { edgewatch.node.enable = true; };
    server = { edgewatch.server.enable = true; };
    monitoring = { edgewatch.monitoring.enable = true; };
  };

  hardware = host:
    if host.role == "node"
    then [ nixos-hardware.nixosModules.raspberry-pi-4 ./hardware/pi4.nix ]
    else [ ./hardware/generic-x86.nix ];

  mkHost = name: host: nixpkgs.lib.nixosSystem {
    modules = [
      edgewatchModule
      profile.${host.role}
      {
        edgewatch.site = site;
        networking.hostName = name;
        nixpkgs.hostPlatform = host.system;
      }
    ] ++ hardware host;
  };
in
builtins.mapAttrs mkHost built.hosts
