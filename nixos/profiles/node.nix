# edgewatch.node: a camera node (or a node without camera) of the site.
# Hardware-independent on purpose: the Pi 4 specifics (SD image, config.txt,
# CPU governor) are in nixos/hardware/pi4.nix, so the VM tests run this very
# profile on x86_64.
#
# runtime = "k3s" (default): k3s agent, camera label, images preloaded, the
#   DaemonSet of k3s/ runs detector + watchdog.
# runtime = "systemd": no Kubernetes; services.edgewatch.{detector,watchdog}.
{ config, lib, pkgs, ... }:
let
  cfg = config.edgewatch.node;
  host = config.edgewatch.host;
  images = pkgs.edgewatch-images;
in
{
  options.edgewatch.node = {
    enable = lib.mkEnableOption "the edgewatch node profile";
    runtime = lib.mkOption {
      type = lib.types.enum [ "k3s" "systemd" ];
      default = "k3s";
      description = "Where the detector and watchdog run: in k3s (DaemonSet) or as systemd units.";
    };
    tokenFile = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/edgewatch/secrets/k3s-token";
      description = ''
        The k3s join token, a file on the node (mode 0400), never in the store.
        nix/DEPLOYING.md says how it gets there.
      '';
    };
    settings = {
      detector = lib.mkOption {
        type = lib.types.attrs;
        default = { };
        description = "services.edgewatch.detector.settings with runtime = \"systemd\".";
      };
      watchdog = lib.mkOption {
        type = lib.types.attrs;
        default = { };
        description = "services.edgewatch.watchdog.settings with runtime = \"systemd\".";
      };
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      assertions = [{
        assertion = host.role == "node";
        message = "edgewatch.node is for hosts with role \"node\"; ${host.name} has role \"${host.role}\".";
      }];
      edgewatch.base.enable = true;
      edgewatch.rollout.enable = true;
    }

    (lib.mkIf (cfg.runtime == "k3s") {
      # nixos/modules/services/cluster/rancher/{default,k3s}.nix, read at
      # 011c1bdb / 01bb496c (the k3s and rke2 modules were merged by nixpkgs
      # PR #447847, which kept every option we use).
      services.k3s = {
        enable = true;
        role = "agent";
        # The same minor as the server (nixos/profiles/server.nix), named,
        # not `pkgs.k3s`: a nixpkgs update that moves the default k3s would
        # otherwise give the nodes (deployed first by `nix run .#rollout`) a
        # kubelet newer than the server's API server, which Kubernetes does
        # not support (version skew policy; kubernetes/kubernetes#127316).
        # Bump both together, server first (nix/DEPLOYING.md).
        package = pkgs.k3s_1_34;
        serverAddr = host.k3s.serverAddr;
        inherit (cfg) tokenFile;
        nodeLabel = host.k3s.nodeLabels;
        # Linked into /var/lib/rancher/k3s/agent/images and imported when the
        # agent starts; pods use imagePullPolicy: Never, so no registry is
        # ever contacted. The pause image replaces rancher/mirrored-pause.
        images = [ images.pause ] ++ lib.optionals host.camera [ images.detector images.watchdog ];
        extraFlags = [ "--pause-image=${images.pause.imageName}:${images.pause.imageTag}" ];
        # Reservations and eviction for this node's RAM (nix/lib/kubelet.nix).
        extraKubeletConfig = host.kubelet;
        gracefulNodeShutdown.enable = true;
      };
      # The DaemonSet's spool is this hostPath (k3s/daemonset.yaml): clips
      # survive pod restarts and updates. Owned by the pods' UID/GID 65532.
      systemd.tmpfiles.settings."10-edgewatch-spool" = lib.mkIf host.camera {
        "/var/spool/edgewatch".d = { mode = "0770"; user = "65532"; group = "65532"; };
      };
      # flannel's VXLAN device and the pod bridge (as nixpkgs' k3s multi-node test).
      networking.firewall.trustedInterfaces = [ "cni0" "flannel.1" ];
      edgewatch.videoDevicePlugin.enable = host.camera;
      # cgroup controllers, camera, clock, spool, page size: checked before the agent
      # starts, and by the health gate (nixos/modules/node-preflight.nix).
      edgewatch.nodePreflight.enable = true;
      edgewatch.rollout.gate = {
        units = [ "sshd.service" "k3s.service" ]
          ++ lib.optional host.camera "edgewatch-video-device-plugin.service";
        k3sNode = true;
        detectorPods = host.camera;
      };
    })

    (lib.mkIf (cfg.runtime == "systemd" && host.camera) {
      services.edgewatch.detector = { enable = true; settings = cfg.settings.detector; openFirewall = true; };
      services.edgewatch.watchdog = { enable = true; settings = cfg.settings.watchdog; openFirewall = true; };
      edgewatch.rollout.gate = {
        units = [ "sshd.service" "edgewatch-detector.service" "edgewatch-watchdog.service" ];
        readyzUrls = [ "http://127.0.0.1:9870/readyz" "http://127.0.0.1:9871/readyz" ];
      };
    })
  ]);
}
