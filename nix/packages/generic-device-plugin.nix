# squat/generic-device-plugin, built like its own flake.nix does
# (buildGoModule, vendored modules so vendorHash = null, CGO off).
# UNVERIFIED: `hash` is a placeholder. This machine cannot reach GitHub to
# compute it; the first `nix build .#generic-device-plugin` fails with the
# real hash in its message. Put it here, then the build is pinned.
{ lib, buildGoModule, fetchFromGitHub }:
buildGoModule rec {
  pname = "generic-device-plugin";
  version = "0-unstable-2c2b04e";
  src = fetchFromGitHub {
    owner = "squat";
    repo = "generic-device-plugin";
    # The revision whose flake.nix this recipe follows.
    rev = "2c2b04e76bccdbdb2c73b6892427aa46cf2151d4";
    hash = lib.fakeHash;
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
