# squat/generic-device-plugin, built like its own flake.nix does
# (buildGoModule, vendored modules so vendorHash = null, CGO off).
#
# Where `hash` comes from: issue #22 gives the NAR hash of the tree at `rev`
# as fetchFromGitHub unpacks it, and it was recomputed here from a snapshot
# of squat/generic-device-plugin: `git archive --prefix=source/ <rev> | tar
# -x` (what GitHub's tarball holds; the tree has no export-ignore or
# export-subst attributes), then `nix hash path source` (Nix 2.8) printed
# the same sha256-4GmJUBRa... . The tree carries `vendor/` (modules.txt
# included), so buildGoModule builds from it and vendorHash = null is right.
{ lib, buildGoModule, fetchFromGitHub }:
buildGoModule rec {
  pname = "generic-device-plugin";
  version = "0-unstable-2c2b04e";
  src = fetchFromGitHub {
    owner = "squat";
    repo = "generic-device-plugin";
    # The revision whose flake.nix this recipe follows.
    rev = "2c2b04e76bccdbdb2c73b6892427aa46cf2151d4";
    hash = "sha256-4GmJUBRaRtSSqfxQBtmrDnlYOEarmdaH66Bsr6d8Oxs=";
  };
  vendorHash = null;
  env.CGO_ENABLED = 0;
  # Its e2e tests need a cluster.
  checkFlags = [ "-skip=^TestE2E" ];
  ldflags = [ "-s" "-w" "-X github.com/squat/generic-device-plugin/version.Version=${version}" ];
  meta = {
    description = "Kubernetes device plugin for generic Linux devices (cameras, serial, FUSE)";
    homepage = "https://github.com/squat/generic-device-plugin";
    license = lib.licenses.asl20;
    mainProgram = "generic-device-plugin";
  };
}
