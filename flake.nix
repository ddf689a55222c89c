{
  # The index of edgewatch's Nix side. Everything substantial lives in
  # nix/ (packages, pure library, golden tests, deploy scripts), nixos/
  # (modules, profiles, the site), k3s/, hydra/ and tests/vm/.
  # Nothing here can be built on the authoring machine (no nixpkgs there);
  # nix/README.md says what was checked and how.
  description = "edgewatch: violence-detection appliance for Raspberry Pi 4 camera nodes";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # No inputs of its own, so nothing to follow.
    nixos-hardware.url = "github:NixOS/nixos-hardware";
  };

  outputs = { self, nixpkgs, nixos-hardware }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f pkgsFor.${system});
      pkgsFor = lib.genAttrs systems (system: import nixpkgs {
        inherit system;
        overlays = [ self.overlays.default ];
      });

      edgeLib = import ./nix/lib;
      site = edgeLib.site.build (import ./nixos/site.nix);
      monitorCidr = "${site.hosts.${site.monitor}.address}/32";

      modules = import ./nixos;
      withOverlay = m: { imports = [ m ]; nixpkgs.overlays = [ self.overlays.default ]; };

      # Turns { <system> = { <name> = drv; }; } into { <name> = { <system> = drv; }; },
      # the shape Hydra shows best.
      bySystem = attrs: lib.foldlAttrs
        (acc: system: jobs: lib.recursiveUpdate acc (lib.mapAttrs (_: job: { ${system} = job; }) jobs))
        { }
        attrs;
    in
    {
      lib = edgeLib;

      overlays.default = import ./nix/packages;

      nixosModules = {
        default = { imports = lib.attrValues modules; nixpkgs.overlays = [ self.overlays.default ]; };
        detector = withOverlay modules.detector;
        watchdog = withOverlay modules.watchdog;
      };

      nixosConfigurations = import ./nixos/hosts.nix {
        inherit nixpkgs nixos-hardware;
        edgewatchModule = self.nixosModules.default;
      };

      packages = forAllSystems (pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
          sdImages = lib.mapAttrs'
            (name: _: lib.nameValuePair "sd-image-${name}" self.nixosConfigurations.${name}.config.system.build.sdImage)
            (lib.filterAttrs (_: h: h.role == "node" && h.system == system) site.hosts);
          cross = pkgs.pkgsCross.aarch64-multiplatform;
        in
        {
          default = pkgs.edgewatch;
          inherit (pkgs) edgewatch edgewatch-onnxruntime edgewatch-tract edgewatch-model-demo generic-device-plugin;
          image-detector = pkgs.edgewatch-images.detector;
          image-watchdog = pkgs.edgewatch-images.watchdog;
          image-pause = pkgs.edgewatch-images.pause;
          manifests = pkgs.edgewatch-manifests-for { inherit monitorCidr; };
        }
        // lib.optionalAttrs (system == "x86_64-linux") {
          # Cross-built for the Pis from an x86_64 builder (no binary cache hits).
          edgewatch-aarch64-cross = cross.edgewatch;
          image-detector-aarch64-cross = cross.edgewatch-images.detector;
          image-watchdog-aarch64-cross = cross.edgewatch-images.watchdog;
        }
        // sdImages);

      # One list of gates (nix/checks.nix); hydraJobs is derived from it.
      checks = forAllSystems (pkgs: import ./nix/checks.nix {
        inherit pkgs self site;
      });

      hydraJobs = {
        packages = bySystem self.packages;
        checks = bySystem self.checks;
      };

      apps = forAllSystems (pkgs: {
        rollout = {
          type = "app";
          program = lib.getExe (pkgs.callPackage ./nix/deploy/app.nix { inherit site; });
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ pkgs.edgewatch ];
          packages = with pkgs; [
            clippy
            rustfmt
            rust-analyzer
            ffmpeg
            kubectl
            kustomize
            nixpkgs-fmt
            deadnix
            shellcheck
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
