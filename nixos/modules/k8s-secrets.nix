# edgewatch.k8sSecrets: Kubernetes Secrets made on the k3s server from files
# that exist only on that host (decrypted by agenix/sops-nix, or copied there
# with `install -m 0400`), never from the Nix store: a Secret put into
# services.k3s.manifests would be world-readable in /nix/store.
#
# For each secret a oneshot unit runs
#   k3s kubectl create secret generic NAME --from-file=KEY=PATH ... \
#     --dry-run=client -o yaml | k3s kubectl apply -f -
# after k3s is up, and a path unit re-runs it whenever one of the files
# changes, which is how secrets are rotated (nix/DEPLOYING.md).
{ config, lib, pkgs, ... }:
let
  cfg = config.edgewatch.k8sSecrets;
  k3s = lib.getExe' config.services.k3s.package "k3s";

  applyScript = name: secret: pkgs.writeShellScript "edgewatch-k8s-secret-${name}" ''
    set -euo pipefail
    for f in ${lib.escapeShellArgs (lib.attrValues secret.files)}; do
      if [ ! -r "$f" ]; then
        echo "secret ${name}: $f is missing; put it there (mode 0400) and this unit re-runs" >&2
        exit 1
      fi
    done
    # The namespace comes from the manifests k3s deploys; wait for it.
    for _ in $(seq 1 60); do
      ${k3s} kubectl get namespace ${lib.escapeShellArg secret.namespace} >/dev/null 2>&1 && break
      sleep 5
    done
    ${k3s} kubectl create secret generic ${lib.escapeShellArg name} \
      --namespace ${lib.escapeShellArg secret.namespace} \
      ${lib.concatStringsSep " " (lib.mapAttrsToList (key: path: "--from-file=${lib.escapeShellArg "${key}=${path}"}") secret.files)} \
      --dry-run=client -o yaml \
      | ${k3s} kubectl apply -f -
  '';
in
{
  options.edgewatch.k8sSecrets = lib.mkOption {
    default = { };
    example = lib.literalExpression ''
      {
        edgewatch-s3.files = {
          access-key-id = "/var/lib/edgewatch/secrets/s3-access-key-id";
          secret-access-key = "/var/lib/edgewatch/secrets/s3-secret-access-key";
        };
      }
    '';
    description = "Secrets to create in the cluster from host files (k3s server only).";
    type = lib.types.attrsOf (lib.types.submodule {
      options = {
        namespace = lib.mkOption {
          type = lib.types.str;
          default = "edgewatch";
          description = "Namespace of the Secret.";
        };
        files = lib.mkOption {
          type = lib.types.attrsOf (lib.types.addCheck lib.types.str
            (p: lib.hasPrefix "/" p && !(lib.hasPrefix "${builtins.storeDir}/" p)));
          description = "Secret key -> absolute path of the file holding its value (a string, outside the store).";
        };
      };
    });
  };

  config = lib.mkIf (cfg != { }) {
    assertions = [{
      assertion = config.services.k3s.enable && config.services.k3s.role == "server";
      message = "edgewatch.k8sSecrets needs the k3s server on this host (services.k3s.role = \"server\").";
    }];

    systemd.services = lib.mapAttrs'
      (name: secret: lib.nameValuePair "edgewatch-k8s-secret-${name}" {
        description = "Kubernetes Secret ${secret.namespace}/${name} from host files";
        wantedBy = [ "multi-user.target" ];
        after = [ "k3s.service" ];
        requires = [ "k3s.service" ];
        environment.KUBECONFIG = "/etc/rancher/k3s/k3s.yaml";
        serviceConfig = {
          Type = "oneshot";
          ExecStart = applyScript name secret;
          Restart = "on-failure";
          RestartSec = "30s";
        };
      })
      cfg;

    systemd.paths = lib.mapAttrs'
      (name: secret: lib.nameValuePair "edgewatch-k8s-secret-${name}" {
        wantedBy = [ "multi-user.target" ];
        pathConfig.PathChanged = lib.attrValues secret.files;
      })
      cfg;
  };
}
