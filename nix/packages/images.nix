# OCI images for k3s, built by Nix and preloaded on the nodes
# (services.k3s.images), so no registry is ever contacted. Tags are fixed
# (the crate version; the pause image "local"), and the manifests use
# imagePullPolicy: Never with exactly these names.
# Architecture: dockerTools takes it from the host platform (go.GOARCH), so
# these are arm64 images in an aarch64 (or pkgsCross.aarch64-multiplatform)
# package set. pkgs/build-support/docker/default.nix.
{ dockerTools, tini, coreutils, edgewatch, edgewatch-model-demo }:
let
  # A fixed non-root UID/GID (the "nonroot" convention of distroless).
  user = "65532:65532";

  mkImage = { role, subcommand, port }: dockerTools.buildLayeredImage {
    name = "edgewatch.local/${role}";
    tag = edgewatch.version;
    contents = [ edgewatch edgewatch-model-demo dockerTools.caCertificates ];
    config = {
      Entrypoint = [ "/bin/edgewatch" subcommand ];
      User = user;
      ExposedPorts."${toString port}/tcp" = { };
      Env = [ "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt" ];
      Labels."org.opencontainers.image.title" = "edgewatch-${role}";
    };
  };
in
{
  detector = mkImage { role = "detector"; subcommand = "detect"; port = 9870; };
  watchdog = mkImage { role = "watchdog"; subcommand = "watch"; port = 9871; };

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
