# edgewatch's pure-Nix library: renderers the NixOS modules use, written
# against builtins only (./helpers.nix) so nix/tests/ can check them with
# `nix-instantiate --eval --strict` and no nixpkgs.
let
  helpers = import ./helpers.nix;
  configTxt = import ./config-txt.nix { inherit helpers; };
  kubelet = import ./kubelet.nix { inherit helpers; };
  site = import ./site.nix { inherit helpers configTxt kubelet; };
  monitoring = import ./monitoring { inherit helpers; sitePorts = site.ports; };
  piBoot = import ./pi-boot.nix { inherit helpers; };
in
{
  inherit helpers configTxt kubelet site monitoring piBoot;
}
