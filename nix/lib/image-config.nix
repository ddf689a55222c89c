# The OCI config of the detector and watchdog images (nix/packages/images.nix
# builds them with dockerTools): what the kubelet runs when the DaemonSet
# gives no command. Pure, so the integration tests' pod-shaped run reads it
# (`nix-instantiate --eval --json`) and runs exactly this entrypoint, as this
# user, with this environment.
let
  mk = { role, subcommand, port }: {
    Entrypoint = [ "/bin/edgewatch" subcommand ];
    # A fixed non-root UID/GID (the "nonroot" convention of distroless).
    User = "65532:65532";
    ExposedPorts."${toString port}/tcp" = { };
    Env = [ "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt" ];
    Labels."org.opencontainers.image.title" = "edgewatch-${role}";
  };
in
{
  detector = mk { role = "detector"; subcommand = "detect"; port = 9870; };
  watchdog = mk { role = "watchdog"; subcommand = "watch"; port = 9871; };
}
