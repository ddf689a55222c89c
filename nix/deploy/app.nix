# `nix run .#rollout`: the deployer side of the health-gated rollout, with
# the site's plan (canary, the rest, addresses) baked in as JSON.
{ lib, writeShellApplication, writeText, jq, openssh, nix, coreutils, site }:
let
  plan = writeText "edgewatch-rollout-plan.json" (builtins.toJSON {
    inherit (site.rollout) canary rest;
    addresses = lib.mapAttrs (_: h: h.address) site.hosts;
  });
in
writeShellApplication {
  name = "edgewatch-rollout";
  runtimeInputs = [ jq openssh nix coreutils ];
  text = ''
    export ROLLOUT_PLAN=''${ROLLOUT_PLAN:-${plan}}
    ${builtins.readFile ./rollout.sh}
  '';
}
