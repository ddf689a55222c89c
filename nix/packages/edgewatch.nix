# The edgewatch binary. rustPlatform.buildRustPackage with the committed
# Cargo.lock (no cargoHash to maintain; every dependency is from crates.io).
# Native and cross alike: pkgsCross.aarch64-multiplatform.callPackage this.
# Build needs (crate notes): v4l's bindgen wants libclang (bindgenHook);
# openh264 compiles bundled C/C++ (stdenv's g++; nasm speeds up x86 only);
# aws-sdk uses rustls, so no OpenSSL. Tests need ffmpeg and run outside Nix,
# hence doCheck = false here and a separate check in flake.nix.
#
# withOnnxruntime (on by default in a native build): the onnxruntime backend
# (cargo feature `onnxruntime`) that `model.backend = "auto"`, the default,
# runs when it can; it loads nixpkgs' libonnxruntime at run time through
# ORT_DYLIB_PATH. A binary wrapper sets that default, so no shell is needed in
# the images and `model.onnxruntime-library` still overrides it. Off in a
# cross build: nixpkgs' cache has onnxruntime for native aarch64 only, and a
# cross-compiled onnxruntime is a project of its own; `auto` runs tract there.
# The `ort` crate is pinned to a release whose minimum Rust (1.88) the
# pinned nixpkgs' rustc meets (25.11 was released with 1.91; Cargo.toml).
#
# The turbojpeg crate (the scaled inference decode) links nixpkgs'
# libjpeg_turbo (3.x: the tj3 API it needs) by explicit paths instead of
# building its bundled copy with cmake, which would also need cmake in
# nativeBuildInputs and dontUseCmakeConfigure (cmake's setup hook takes over
# the configure phase otherwise). Explicit paths work alike native and cross.
#
# jemalloc (Rust's allocator, src/alloc.rs) is built from tikv-jemalloc-sys'
# bundled source with its configure script (stdenv's sh, make and cc). Its page
# size is fixed at build time, from the builder's unless told: 4 KiB, as
# .cargo/config.toml says (that file is not in `src`, so it is set here too),
# the Pi 4 kernel's. On a 16 KiB page kernel it aborts at start; the node
# preflight checks the page size (nix/KNOWN-ISSUES.md row 39).
{ lib
, stdenv
, rustPlatform
, nasm
, libjpeg_turbo
, makeBinaryWrapper
, onnxruntime
, withOnnxruntime ? stdenv.buildPlatform.config == stdenv.hostPlatform.config
}:
let
  root = ../..;
  manifest = lib.importTOML (root + "/Cargo.toml");
  # Only what cargo reads: Nix/k3s/CI edits do not rebuild the binary.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/Cargo.toml")
      (root + "/Cargo.lock")
      (root + "/src")
      # `edgewatch demo` embeds the demo model and video (include_bytes!).
      (root + "/model/demo")
      (root + "/demo/demo.avi")
      (lib.fileset.maybeMissing (root + "/build.rs"))
      (lib.fileset.maybeMissing (root + "/tests/integration"))
      (lib.fileset.maybeMissing (root + "/bench"))
      (lib.fileset.maybeMissing (root + "/benches"))
      (lib.fileset.maybeMissing (root + "/examples"))
    ];
  };
in
rustPlatform.buildRustPackage {
  pname = manifest.package.name;
  inherit (manifest.package) version;
  inherit src;
  cargoLock.lockFile = root + "/Cargo.lock";

  nativeBuildInputs = [ rustPlatform.bindgenHook ]
    ++ lib.optional stdenv.hostPlatform.isx86_64 nasm
    ++ lib.optional withOnnxruntime makeBinaryWrapper;

  buildInputs = [ libjpeg_turbo ];
  env = {
    JEMALLOC_SYS_WITH_LG_PAGE = "12";
    TURBOJPEG_SOURCE = "explicit";
    TURBOJPEG_DYNAMIC = "1";
    TURBOJPEG_LIB_DIR = "${lib.getLib libjpeg_turbo}/lib";
    TURBOJPEG_INCLUDE_DIR = "${lib.getDev libjpeg_turbo}/include";
  };

  buildFeatures = lib.optional withOnnxruntime "onnxruntime";

  # makeBinaryWrapper's wrapProgram; --set-default leaves an operator's
  # ORT_DYLIB_PATH alone.
  postFixup = lib.optionalString withOnnxruntime ''
    wrapProgram $out/bin/edgewatch \
      --set-default ORT_DYLIB_PATH ${lib.getLib onnxruntime}/lib/libonnxruntime${stdenv.hostPlatform.extensions.sharedLibrary}
  '';

  doCheck = false;

  meta = {
    inherit (manifest.package) description;
    license = lib.licenses.asl20;
    mainProgram = "edgewatch";
    platforms = lib.platforms.linux;
  };
}
