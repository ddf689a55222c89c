# Scenario 2: a node without camera = true gets no camera=true label, no
# device plugin and no edgewatch pod; the labelled node gets exactly one.
{ lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  # Node numbers: camera 1, plain 2, server 3.
  site = common.mkSite {
    camera = { address = "192.168.1.1"; camera = true; };
    plain = { address = "192.168.1.2"; };
    server = { address = "192.168.1.3"; role = "server"; };
  };
in
{
  name = "edgewatch-unlabelled-node";
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
    };
    plain = {
      imports = [ common.k3sNode common.fakeCamera ];
      edgewatch.site = site;
      edgewatch.node.enable = true;
    };
  };

  testScript = ''
    start_all()
    server.wait_for_unit("k3s.service")
    for node in ["camera", "plain"]:
        server.wait_until_succeeds(
            f"k3s kubectl get node {node} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}' | grep -x True",
            timeout=600,
        )

    with subtest("both nodes passed their preflight; the one without camera skips the camera checks"):
        for node, checks in [(camera, 7), (plain, 4)]:
            node.succeed("systemctl is-active edgewatch-node-preflight.service")
            node.succeed(f"edgewatch-node-preflight | grep -x 'preflight: ok ({checks} checks)'")
        plain.fail("grep 'check=\"camera\"' ${common.preflightMetrics}")

    with subtest("only the camera node is labelled and runs the device plugin"):
        server.succeed("k3s kubectl get node camera -o jsonpath='{.metadata.labels.camera}' | grep -x true")
        server.fail("k3s kubectl get node plain -o jsonpath='{.metadata.labels.camera}' | grep -x true")
        plain.fail("systemctl cat edgewatch-video-device-plugin.service")
        # Even with a /dev/video0 present, plain advertises no camera.
        server.fail("k3s kubectl get node plain -o jsonpath='{.status.allocatable.squat\\.ai/video}' | grep -x 1")

    with subtest("the DaemonSet targets one node and its pod lands on camera"):
        server.wait_until_succeeds(
            "k3s kubectl -n edgewatch get daemonset edgewatch -o jsonpath='{.status.desiredNumberScheduled}' | grep -x 1",
            timeout=600,
        )
        server.wait_until_succeeds(
            "k3s kubectl -n edgewatch get pods -o jsonpath='{.items[*].spec.nodeName}' | grep -x camera",
            timeout=600,
        )
        plain.fail("k3s crictl pods --namespace edgewatch -q | grep .")
  '';
}
