# The Kubernetes manifests k3s deploys: `kustomize build` of k3s/ at build
# time, with the image tags set to the packaged version and the NetworkPolicy
# opened to the site's monitoring host. An `overlay` (a directory with a
# kustomization.yaml whose resources include ../base) replaces the top
# level, which is how the VM tests swap in their configuration.
{ lib, runCommand, writeText, kustomize, edgewatch }:
{ monitorCidr, overlay ? null }:
let
  kustomization = builtins.toJSON {
    apiVersion = "kustomize.config.k8s.io/v1beta1";
    kind = "Kustomization";
    resources = [ (if overlay == null then "../base" else "../overlay") ];
    images = map (role: { name = "edgewatch.local/${role}"; newTag = edgewatch.version; }) [ "detector" "watchdog" ];
    patches = [{
      target = { kind = "NetworkPolicy"; name = "edgewatch-metrics-from-monitoring"; };
      patch = builtins.toJSON [{
        op = "replace";
        path = "/spec/ingress/0/from/0/ipBlock/cidr";
        value = monitorCidr;
      }];
    }];
  };
in
runCommand "edgewatch-manifests.yaml" { nativeBuildInputs = [ kustomize ]; } ''
  mkdir site
  cp -r ${lib.cleanSource ../../k3s} base
  ${lib.optionalString (overlay != null) "cp -r ${overlay} overlay"}
  chmod -R u+w .
  cp ${writeText "kustomization.yaml" kustomization} site/kustomization.yaml
  kustomize build site > $out
''
