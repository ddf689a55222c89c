# Shared pieces of the VM tests.
#
# Addresses: the test driver gives node number N (nodes sorted by name,
# from 1) the address 192.168.1.N on eth1 (nixos/lib/testing/network.nix),
# so each test's site description lists its nodes in that order.
# `monitor` has no VM in the k3s tests; only its address is used (for the
# NetworkPolicy and promtail, whose pushes then fail harmlessly).
{ lib, pkgs }:
rec {
  # The modules without nixosModules.default's overlay wrapper: the test
  # framework hands the nodes a read-only pkgs (which has the overlay).
  modules = lib.attrValues (import ../../nixos);

  mkSite = hosts: {
    name = "vm";
    domain = "vm.test";
    network = { prefixLength = 24; gateway = "192.168.1.254"; nameservers = [ "192.168.1.254" ]; };
    adminKeys = [ ];
    hosts = hosts // { monitor = { address = "192.168.1.250"; role = "monitoring"; }; };
  };

  # Test-only secrets: dummy values, so the store is fine here (never in a
  # module default; see nixos/modules/k8s-secrets.nix for the real path).
  secrets = [
    "d /var/lib/edgewatch/secrets 0700 root root -"
    "f /var/lib/edgewatch/secrets/k3s-token 0400 root root - vm-test-token"
    "f /var/lib/edgewatch/secrets/s3-access-key-id 0400 root root - test"
    "f /var/lib/edgewatch/secrets/s3-secret-access-key 0400 root root - test"
    "f /var/lib/edgewatch/secrets/smtp-password 0400 root root - test"
  ];

  # A node of the test cluster: address from the driver, k3s on eth1.
  # The test network has no NTP server, and the nodes' preflight requires a
  # synchronised clock (nixos/modules/node-preflight.nix): the server VM
  # serves its own clock with chrony's local reference mode, and the other
  # VMs take their time from it (systemd-timesyncd, networking.timeServers),
  # as a site's nodes would from its NTP server. qemu-vm.nix turns
  # timesyncd off in every test VM ("It should get the correct time from
  # KVM", read @00008e8eb762), which leaves the kernel's clock marked
  # unsynchronised (timedatectl: NTPSynchronized=no): without the mkForce
  # below the preflight's clock check never passes and k3s never starts.
  k3sNode = { config, ... }:
    let
      inherit (config.edgewatch) built;
      isServer = config.edgewatch.host.role == "server";
    in
    {
      imports = modules;
      edgewatch.base.staticNetwork = false;
      systemd.tmpfiles.rules = secrets;
      services.k3s = {
        nodeIP = config.networking.primaryIPAddress;
        extraFlags = [ "--flannel-iface=eth1" ];
      };
      services.chrony = lib.mkIf isServer {
        enable = true;
        extraConfig = ''
          allow 192.168.1.0/24
          local stratum 8
        '';
      };
      networking.firewall.allowedUDPPorts = lib.mkIf isServer [ 123 ];
      networking.timeServers = if isServer then [ ] else [ built.hosts.${built.server}.address ];
      services.timesyncd.enable = lib.mkIf (!isServer) (lib.mkForce true);
      virtualisation = { memorySize = 2048; diskSize = 4096; cores = 2; };
    };

  # The preflight's results on a node, as the test script reads them.
  preflightMetrics = "/var/lib/prometheus-node-exporter-text/edgewatch-preflight.prom";

  # A /dev/video0 for the device plugin to advertise (the pod requests
  # squat.ai/video even when its source is a file).
  fakeCamera = { config, ... }: {
    boot.extraModulePackages = [ config.boot.kernelPackages.v4l2loopback ];
    boot.kernelModules = [ "v4l2loopback" ];
  };

  # The bundled demo video (calm, a fight, calm: demo/README.md). The demo
  # model scores its fight above the threshold and the calm parts below
  # (tests/integration/model.rs checks that), so a run holds exactly one event.
  testVideo = ../../demo/demo.avi;

  # The k3s/ base with the test overlay (file source, SMTP to the `mail`
  # VM, no S3 archive), rendered exactly like the real site's.
  manifests = pkgs.edgewatch-manifests-for {
    monitorCidr = "192.168.1.250/32";
    overlay = ./overlay;
  };
}
