# Scenario 3: a deploy of a broken generation fails its health gate and the
# node ends up on the previous generation. Uses the node-side rollout
# (`edgewatch-activate`, nix/deploy/activate.sh) exactly as
# `nix run .#rollout` drives it over SSH, on a node with the systemd runtime
# (no k3s, so the scenario stays about the rollback).
# The candidate generations are specialisations of the booted system, so
# they are in the VM's store without a build step inside the test.
{ lib, pkgs, ... }:
let
  common = import ./common.nix { inherit lib pkgs; };
  site = common.mkSite {
    camera = { address = "192.168.1.1"; camera = true; };
    server = { address = "192.168.1.2"; role = "server"; };
  };
in
{
  name = "edgewatch-broken-deploy-rollback";
  globalTimeout = 20 * 60;

  nodes.camera = {
    imports = common.modules;
    edgewatch.site = site;
    edgewatch.base.staticNetwork = false;
    edgewatch.node = {
      enable = true;
      runtime = "systemd";
      settings.detector = {
        camera = "vm-cam";
        source = { kind = "file"; path = "${common.testVideo}"; pace = "realtime"; loop = true; };
        model.source = "${pkgs.edgewatch-model-demo}/share/edgewatch/model/demo";
        archive.target = "";
      };
    };
    # This scenario is about the detector; without an SMTP server the
    # watchdog would only add noise to the gate.
    services.edgewatch.watchdog.enable = lib.mkForce false;
    edgewatch.rollout = {
      confirmTimeout = 30;
      gate = {
        timeout = 90;
        units = lib.mkForce [ "sshd.service" "edgewatch-detector.service" ];
        readyzUrls = lib.mkForce [ "http://127.0.0.1:9870/readyz" ];
      };
    };

    specialisation = {
      # Passes the build-time check-config (its configuration is valid) and
      # fails at run time: the detector never starts.
      broken.configuration.systemd.services.edgewatch-detector.serviceConfig.ExecStartPre =
        "${pkgs.coreutils}/bin/false";
      # A harmless change, to show a healthy generation is kept.
      upgrade.configuration.services.edgewatch.detector.settings.log.level = "debug";
    };
    virtualisation.memorySize = 2048;
  };

  testScript = ''
    camera.wait_for_unit("edgewatch-detector.service")
    camera.wait_until_succeeds("curl -sf http://127.0.0.1:9870/readyz", timeout=300)
    # Test VMs boot without a system profile; a deployed node has one.
    camera.succeed("nix-env --profile /nix/var/nix/profiles/system --set /run/current-system")
    original = camera.succeed("readlink -f /run/current-system").strip()
    generation = camera.succeed("readlink /nix/var/nix/profiles/system").strip()
    broken = camera.succeed("readlink -f /run/current-system/specialisation/broken").strip()
    upgrade = camera.succeed("readlink -f /run/current-system/specialisation/upgrade").strip()

    def on(expected):
        current = camera.succeed("readlink -f /run/current-system").strip()
        assert current == expected, f"running {current}, expected {expected}"

    with subtest("a broken generation fails its health gate and is rolled back"):
        camera.fail(f"edgewatch-activate --run {broken}")
        on(original)
        profile = camera.succeed("readlink /nix/var/nix/profiles/system").strip()
        assert profile == generation, f"profile points at {profile}, expected {generation}"
        camera.succeed("edgewatch-activate --status | grep '^rolled-back: health gate failed'")
        camera.wait_until_succeeds("curl -sf http://127.0.0.1:9870/readyz", timeout=300)
        camera.succeed("edgewatch-health-gate")

    with subtest("a healthy generation the deployer never confirms is rolled back"):
        camera.fail(f"CONFIRM_TIMEOUT=5 edgewatch-activate --run {upgrade}")
        on(original)
        camera.succeed("edgewatch-activate --status | grep '^rolled-back: no confirmation'")

    with subtest("a healthy, confirmed generation stays"):
        camera.succeed(
            "systemd-run --unit=edgewatch-rollout --collect "
            f"/run/current-system/sw/bin/edgewatch-activate --run {upgrade}"
        )
        camera.wait_until_succeeds("edgewatch-activate --status | grep -x awaiting-confirmation", timeout=300)
        camera.succeed("edgewatch-activate --confirm")
        camera.wait_until_succeeds("edgewatch-activate --status | grep '^done:'", timeout=60)
        on(upgrade)
  '';
}
