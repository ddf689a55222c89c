# Kubelet reservations and eviction thresholds for a small node, as a pure
# function of its RAM, rendered into KubeletConfiguration keys
# (kubelet.config.k8s.io/v1beta1: systemReserved, kubeReserved, evictionHard,
# evictionSoft, evictionSoftGracePeriod, evictionMaxPodGracePeriod).
# nixos/profiles/node.nix passes the result to services.k3s.extraKubeletConfig.
#
# Sizing for a 4 GB Pi 4 (gpu_mem=128 leaves ~3968 MiB to Linux):
#   systemReserved 256Mi  sshd, journald, promtail, node exporter, firmware sync
#   kubeReserved   256Mi  k3s agent (kubelet + containerd + flannel); an
#                         estimate, not a measurement
#   evictionHard   200Mi  memory.available; pods are evicted before the OOM
#                         killer picks a random victim
#   evictionSoft   300Mi  for 1m30s, so a short spike during clip encoding
#                         does not evict the detector
# Each reservation is max(floor, a share of RAM) so a 8 GB board scales.
# These numbers are starting points, to be re-measured by bench/ on a Pi.
{ helpers ? import ./helpers.nix }:
let
  inherit (helpers) max;
  mi = n: "${toString n}Mi";
in
{
  sizing = { memoryMiB, gpuMemMiB ? 0 }:
    let
      usable = memoryMiB - gpuMemMiB;
      system = max 256 (usable * 6 / 100);
      kube = max 256 (usable * 6 / 100);
      hard = max 200 (usable * 5 / 100);
      soft = hard * 3 / 2;
    in
    if usable < 1024 then throw "kubelet: ${toString usable} MiB is too little RAM for a k3s camera node"
    else {
      allocatableMiB = usable - system - kube - hard;
      kubeletConfig = {
        systemReserved = { memory = mi system; cpu = "250m"; };
        kubeReserved = { memory = mi kube; cpu = "250m"; };
        evictionHard = {
          "memory.available" = mi hard;
          "nodefs.available" = "10%";
          "imagefs.available" = "15%";
          "nodefs.inodesFree" = "5%";
        };
        evictionSoft = { "memory.available" = mi soft; };
        evictionSoftGracePeriod = { "memory.available" = "1m30s"; };
        evictionMaxPodGracePeriod = 30;
      };
    };
}
