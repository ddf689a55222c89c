# The Kubernetes Secrets the k3s server makes from host files
# (nixos/profiles/server.nix sets edgewatch.k8sSecrets to this): Secret name
# -> key -> host path. Pure, so the integration tests' pod-shaped run mounts
# each Secret with exactly these keys and checks every `*_FILE` variable of
# the DaemonSet against them.
{ secretsDir }:
{
  edgewatch-s3.files = {
    access-key-id = "${secretsDir}/s3-access-key-id";
    secret-access-key = "${secretsDir}/s3-secret-access-key";
  };
  edgewatch-smtp.files.password = "${secretsDir}/smtp-password";
}
