# edgewatch.site: the site description (nixos/site.nix) and what
# nix/lib/site.nix derives from it, made available to every module.
# edgewatch.host is this machine's entry, looked up by networking.hostName.
{ config, lib, ... }:
let
  edgeLib = import ../../nix/lib;
  built = edgeLib.site.build config.edgewatch.site;
in
{
  options.edgewatch = {
    site = lib.mkOption {
      type = lib.types.attrs;
      description = "The site description; see nixos/site.nix for the format.";
    };
    built = lib.mkOption {
      type = lib.types.attrs;
      readOnly = true;
      description = "The site as nix/lib/site.nix derives it (hosts, rollout, scrape targets).";
    };
    host = lib.mkOption {
      type = lib.types.attrs;
      readOnly = true;
      description = "This host's derived settings (`edgewatch.built.hosts.<networking.hostName>`).";
    };
  };

  config.edgewatch = {
    inherit built;
    host = built.hosts.${config.networking.hostName} or (throw ''
      edgewatch: host "${config.networking.hostName}" is not in the site description.
      Add it under `hosts` in nixos/site.nix (or the site given to edgewatch.site).
    '');
  };
}
