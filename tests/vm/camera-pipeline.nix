# Scenario 1: the k3s server and a camera agent come up from the real
# profiles; the agent's preloaded images run detector + watchdog (the
# detector on a test video, through the k3s/ base plus tests/vm/overlay);
# the watchdog mails the clip to an SMTP sink on a third VM and deletes it.
{ lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  # Node numbers: camera 1, mail 2, server 3 (see common.nix).
  site = common.mkSite {
    camera = { address = "192.168.1.1"; camera = true; };
    server = { address = "192.168.1.3"; role = "server"; };
  };
in
{
  name = "edgewatch-camera-pipeline";
  globalTimeout = 45 * 60;

  nodes = {
    server = {
      imports = [ common.k3sNode ];
      edgewatch.site = site;
      edgewatch.server = { enable = true; inherit (common) manifests; };
    };

    camera = {
      imports = [ common.k3sNode common.fakeCamera ];
      edgewatch.site = site;
      edgewatch.node.enable = true;
      systemd.tmpfiles.rules = [
        "d /var/lib/edgewatch-test 0755 root root -"
        "C /var/lib/edgewatch-test/clip.avi 0444 root root - ${common.testVideo}"
      ];
    };

    # An SMTP sink: every message lands in a Maildir.
    mail = {
      networking.firewall.allowedTCPPorts = [ 25 ];
      systemd.services.smtp-sink = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = lib.escapeShellArgs [
          "${pkgs.python3.withPackages (ps: [ ps.aiosmtpd ])}/bin/python3"
          "-m"
          "aiosmtpd"
          "-n"
          "-l"
          "0.0.0.0:25"
          "-c"
          "aiosmtpd.handlers.Mailbox"
          "/var/lib/mail"
        ];
      };
    };
  };

  testScript = ''
    start_all()

    with subtest("the cluster forms and only the camera node carries camera=true"):
        server.wait_for_unit("k3s.service")
        camera.wait_for_unit("k3s.service")
        server.wait_until_succeeds(
            "k3s kubectl get node camera -o jsonpath='{.metadata.labels.camera}' | grep -x true",
            timeout=600,
        )
        server.fail("k3s kubectl get node server -o jsonpath='{.metadata.labels.camera}' | grep -x true")

    with subtest("the node preflight passed (fake camera, NTP from the server) before the agent started"):
        camera.wait_for_unit("edgewatch-node-preflight.service")
        camera.succeed("edgewatch-node-preflight")
        for check in ["cgroup_memory", "cgroup_cpu", "cgroup_pids", "camera", "clock", "spool"]:
            camera.succeed(f"grep -x 'edgewatch_preflight_ok{{check=\"{check}\"}} 1' ${common.preflightMetrics}")
        # k3s is ordered after the preflight and requires it.
        preflight_done = int(camera.succeed(
            "systemctl show -P ExecMainExitTimestampMonotonic edgewatch-node-preflight.service").strip())
        k3s_started = int(camera.succeed("systemctl show -P ExecMainStartTimestampMonotonic k3s.service").strip())
        assert preflight_done <= k3s_started, f"k3s started at {k3s_started}, before the preflight ended at {preflight_done}"

    with subtest("images are imported from disk, not pulled"):
        # As nixpkgs' nixos/tests/k3s/airgap-images.nix: services.k3s.images
        # are linked into the agent's image directory and imported at start.
        for node in [server, camera]:
            node.wait_until_succeeds(
                "journalctl -u k3s --no-pager | grep 'Imported images from /var/lib/rancher/k3s/agent/images/'",
                timeout=600,
            )
            node.succeed("k3s ctr --namespace k8s.io images ls -q | grep edgewatch.local/pause")
        camera.succeed("k3s ctr --namespace k8s.io images ls -q | grep edgewatch.local/detector")
        camera.succeed("k3s ctr --namespace k8s.io images ls -q | grep edgewatch.local/watchdog")

    with subtest("the device plugin advertises the camera"):
        camera.wait_for_unit("edgewatch-video-device-plugin.service")
        server.wait_until_succeeds(
            "k3s kubectl get node camera -o jsonpath='{.status.allocatable.squat\\.ai/video}' | grep -x 1",
            timeout=300,
        )

    with subtest("Secrets are made from host files"):
        server.wait_until_succeeds("k3s kubectl -n edgewatch get secret edgewatch-s3 edgewatch-smtp", timeout=600)

    with subtest("detector and watchdog become ready, the node passes its health gate"):
        server.wait_until_succeeds(
            "k3s kubectl -n edgewatch rollout status daemonset/edgewatch --timeout=30s", timeout=1200
        )
        camera.succeed("edgewatch-health-gate")

    with subtest("the event is clipped, mailed and deleted from the spool"):
        mail.wait_until_succeeds("test -n \"$(ls -A /var/lib/mail/new)\"", timeout=600)
        mail.succeed("grep -il 'mp4' /var/lib/mail/new/*")
        camera.wait_until_succeeds("! ls /var/spool/edgewatch/*.mp4", timeout=600)

    with subtest("no image was pulled from a registry"):
        # The kubelet records an event with reason Pulling for every pull;
        # imagePullPolicy: Never and --pause-image leave none.
        server.fail("k3s kubectl get events --all-namespaces --field-selector reason=Pulling -o name | grep .")

    with subtest("the NetworkPolicy admits only the monitoring host to the metrics ports"):
        mail.fail("curl --silent --fail --max-time 5 http://192.168.1.1:9870/metrics")
  '';
}
