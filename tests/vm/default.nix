# NixOS VM tests, one file per scenario, as pkgs.testers.runNixOSTest
# (pkgs/build-support/testers/default.nix). `pkgs` must carry the edgewatch
# overlay (flake.nix passes pkgsFor.x86_64-linux). They need KVM; the nodes
# are x86_64 VMs running the same profiles as the Pis, without the Pi 4
# hardware module (nixos/hardware/pi4.nix).
{ pkgs }:
builtins.mapAttrs (_: test: pkgs.testers.runNixOSTest (import test)) {
  vm-camera-pipeline = ./camera-pipeline.nix;
  vm-unlabelled-node = ./unlabelled-node.nix;
  vm-broken-deploy-rollback = ./broken-deploy-rollback.nix;
  vm-node-preflight = ./node-preflight.nix;
}
