# edgewatch.server: the k3s server of the site. Single server with the
# embedded SQLite datastore (clusterInit = false); add-ons that would pull
# images from the internet are disabled; the workload comes from k3s/
# (rendered by kustomize at build time) and its Secrets from host files.
{ config, lib, pkgs, ... }:
let
  cfg = config.edgewatch.server;
  host = config.edgewatch.host;
  pause = pkgs.edgewatch-images.pause;
  monitorAddress = config.edgewatch.built.hosts.${config.edgewatch.built.monitor}.address;
in
{
  options.edgewatch.server = {
    enable = lib.mkEnableOption "the edgewatch k3s server profile";
    tokenFile = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/edgewatch/secrets/k3s-token";
      description = "The cluster's join token (same file content as on the nodes), outside the store.";
    };
    secretsDir = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/edgewatch/secrets";
      description = "Directory of the decrypted secret files the cluster Secrets are made from.";
    };
    manifests = lib.mkOption {
      type = lib.types.package;
      default = pkgs.edgewatch-manifests-for { monitorCidr = "${monitorAddress}/32"; };
      defaultText = lib.literalExpression ''pkgs.edgewatch-manifests-for { monitorCidr = "<monitoring host>/32"; }'';
      description = "The rendered Kubernetes manifests (kustomize build of k3s/, or an overlay).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = host.role == "server";
      message = "edgewatch.server is for the host with role \"server\"; ${host.name} has role \"${host.role}\".";
    }];
    edgewatch.base.enable = true;

    # nixos/modules/services/cluster/rancher/{default,k3s}.nix (see node.nix).
    services.k3s = {
      enable = true;
      role = "server";
      # Named, and the same as the nodes' (nixos/profiles/node.nix says why);
      # .ci/nix-checks.sh validates the manifests against this minor.
      package = pkgs.k3s_1_34;
      clusterInit = false; # embedded SQLite, no etcd
      inherit (cfg) tokenFile;
      # Bundled add-ons that pull images. Without CoreDNS, the DaemonSet uses
      # dnsPolicy: Default (the node's resolver); nothing else needs it.
      disable = [ "traefik" "servicelb" "metrics-server" "local-storage" "coredns" ];
      extraFlags = [
        "--pause-image=${pause.imageName}:${pause.imageTag}"
        "--disable-helm-controller"
        "--write-kubeconfig-mode=0600"
      ];
      images = [ pause ];
      # Linked into /var/lib/rancher/k3s/server/manifests. k3s does not delete
      # what a removed manifest created; delete such objects by hand.
      manifests.edgewatch.source = cfg.manifests;
    };

    # Pure (nix/lib/k8s-secrets.nix): the pod-shaped integration test mounts these keys.
    edgewatch.k8sSecrets = import ../../nix/lib/k8s-secrets.nix { inherit (cfg) secretsDir; };

    edgewatch.rollout = {
      enable = true;
      gate = {
        units = [ "sshd.service" "k3s.service" ];
        k3sNode = true;
        kubeconfig = "/etc/rancher/k3s/k3s.yaml";
      };
    };
  };
}
