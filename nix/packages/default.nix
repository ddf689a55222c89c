# The overlay the flake exports: every package edgewatch builds, so the NixOS
# modules can refer to pkgs.edgewatch & co. in any (cross) package set.
final: _prev: {
  edgewatch = final.callPackage ./edgewatch.nix { };
  # With the onnxruntime backend and nixpkgs' library whatever the build (what
  # `edgewatch` is natively), and tract alone (what it is in a cross build).
  edgewatch-onnxruntime = final.edgewatch.override { withOnnxruntime = true; };
  edgewatch-tract = final.edgewatch.override { withOnnxruntime = false; };
  edgewatch-model-demo = final.callPackage ./model.nix { };
  edgewatch-images = final.callPackage ./images.nix { };
  edgewatch-manifests-for = final.callPackage ./manifests.nix { };
  generic-device-plugin = final.callPackage ./generic-device-plugin.nix { };
}
