# Scenario 4: the node preflight (nixos/modules/node-preflight.nix) keeps a
# broken node out of the cluster and names the broken thing.
#   * `camera` has its (fake) camera: the preflight passes, it becomes Ready.
#   * `nocam` is a camera node whose camera is missing (v4l2loopback is
#     available but not loaded): its preflight fails on `camera`, k3s never
#     starts, the node is not Ready, and the health gate names the check.
#     Once the camera appears, the preflight passes and the node joins.
#   * A deploy whose new generation fails a check (a spool minimum no disk
#     meets) is rolled back by edgewatch-activate, and the status the
#     deployer reads names the check.
{ lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  # Node numbers: camera 1, nocam 2, server 3 (see common.nix).
  site = common.mkSite {
    camera = { address = "192.168.1.1"; camera = true; };
    nocam = { address = "192.168.1.2"; camera = true; };
    server = { address = "192.168.1.3"; role = "server"; };
  };
  # The Node's Ready condition; \\\" is \" in Python's string, " for the shell.
  ready = node: "k3s kubectl get node ${node} -o jsonpath='{.status.conditions[?(@.type==\\\"Ready\\\")].status}'";
in
{
  name = "edgewatch-node-preflight";
  globalTimeout = 30 * 60;

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
      # This scenario is about the preflight; the detector pods are the
      # camera-pipeline scenario's business.
      edgewatch.rollout = { confirmTimeout = 30; gate = { timeout = 60; detectorPods = lib.mkForce false; }; };
      # A generation that cannot pass: no file system has 1 TiB free.
      specialisation.spool-too-small.configuration.edgewatch.nodePreflight.minFreeMiB = lib.mkForce (1024 * 1024);
    };

    nocam = { config, ... }: {
      imports = [ common.k3sNode ];
      edgewatch.site = site;
      edgewatch.node.enable = true;
      # Fail sooner; the real nodes wait 180 s for a USB camera to enumerate.
      edgewatch.nodePreflight.waitSeconds = 60;
      edgewatch.rollout.gate.timeout = 20;
      # The camera "appears" when the test loads the module.
      boot.extraModulePackages = [ config.boot.kernelPackages.v4l2loopback ];
    };
  };

  testScript = ''
    start_all()
    server.wait_for_unit("k3s.service")

    with subtest("a node that passes its preflight joins and is Ready"):
        camera.wait_for_unit("edgewatch-node-preflight.service")
        server.wait_until_succeeds("${ready "camera"} | grep -x True", timeout=600)
        camera.succeed("edgewatch-health-gate")

    with subtest("a node whose preflight fails does not start k3s and is not Ready"):
        nocam.wait_until_succeeds("systemctl is-failed edgewatch-node-preflight.service", timeout=300)
        nocam.succeed(
            "journalctl -u edgewatch-node-preflight --no-pager"
            " | grep 'FAIL camera: /dev/video0 does not exist. Fix: plug in the USB (UVC) camera'"
        )
        nocam.succeed("grep -x 'edgewatch_preflight_ok{check=\"camera\"} 0' ${common.preflightMetrics}")
        # Everything else is fine (the clock may take a little longer).
        nocam.wait_until_succeeds("edgewatch-node-preflight | grep -x 'preflight: FAILED: camera'", timeout=120)
        nocam.fail("systemctl is-active k3s.service")
        # Never registered: no Node object, so certainly not Ready.
        server.fail("${ready "nocam"} | grep -x True")

    with subtest("the health gate names the failed check"):
        out = nocam.fail("GATE_TIMEOUT=5 edgewatch-health-gate 2>&1")
        assert "UNHEALTHY" in out and "preflight failed: camera" in out, out
        assert "Fix: plug in the USB (UVC) camera" in out, out

    with subtest("once the camera is there, the preflight passes and the node joins"):
        nocam.succeed("modprobe v4l2loopback")
        nocam.wait_until_succeeds("test -c /dev/video0")
        # Starting k3s starts the preflight it requires again.
        nocam.succeed("systemctl reset-failed edgewatch-node-preflight.service")
        nocam.succeed("systemctl start k3s.service")
        nocam.succeed("systemctl is-active edgewatch-node-preflight.service")
        server.wait_until_succeeds("${ready "nocam"} | grep -x True", timeout=600)
        nocam.succeed("grep -x 'edgewatch_preflight_ok{check=\"camera\"} 1' ${common.preflightMetrics}")

    with subtest("a deploy that breaks a check is rolled back with the check named"):
        # Test VMs boot without a system profile; a deployed node has one.
        camera.succeed("nix-env --profile /nix/var/nix/profiles/system --set /run/current-system")
        original = camera.succeed("readlink -f /run/current-system").strip()
        broken = camera.succeed("readlink -f /run/current-system/specialisation/spool-too-small").strip()
        camera.fail(f"edgewatch-activate --run {broken}")
        current = camera.succeed("readlink -f /run/current-system").strip()
        assert current == original, f"running {current}, expected {original}"
        status = camera.succeed("edgewatch-activate --status").strip()
        assert status.startswith("rolled-back: health gate failed: UNHEALTHY"), status
        assert "preflight failed: spool" in status, status
        # The switch did not restart the preflight, so k3s kept running.
        server.succeed("${ready "camera"} | grep -x True")
  '';
}
