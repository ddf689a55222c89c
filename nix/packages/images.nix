# OCI images for k3s, built by Nix and preloaded on the nodes
# (services.k3s.images), so no registry is ever contacted. Tags are fixed
# (the crate version; the pause image "local"), and the manifests use
# imagePullPolicy: Never with exactly these names.
# Architecture: dockerTools takes it from the host platform (go.GOARCH), so
# these are arm64 images in an aarch64 (or pkgsCross.aarch64-multiplatform)
# package set. pkgs/build-support/docker/default.nix.
{ dockerTools, tini, coreutils, edgewatch, edgewatch-model-demo }:
let
  # The images' config is pure Nix (nix/lib/image-config.nix): the pod-shaped
  # integration test runs the very entrypoint, user and environment.
  configs = import ../lib/image-config.nix;
  mkImage = role: dockerTools.buildLayeredImage {
    name = "edgewatch.local/${role}";
    tag = edgewatch.version;
    contents = [ edgewatch edgewatch-model-demo dockerTools.caCertificates ];
    config = configs.${role};
  };
in
{
  detector = mkImage "detector";
  watchdog = mkImage "watchdog";

  # k3s' default pause image (rancher/mirrored-pause) would be pulled from a
  # registry; this one is passed with --pause-image. As nixpkgs'
  # nixos/tests/k3s use: tini reaping, sleeping forever.
  pause = dockerTools.buildLayeredImage {
    name = "edgewatch.local/pause";
    tag = "local";
    contents = [ tini coreutils ];
    config = {
      Entrypoint = [ "/bin/tini" "--" "/bin/sleep" "inf" ];
      User = "65535:65535";
    };
  };
}
