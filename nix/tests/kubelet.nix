{ lib }:
[
  {
    name = "4 GB Pi with gpu_mem=128";
    actual = lib.kubelet.sizing { memoryMiB = 4096; gpuMemMiB = 128; };
    expected = {
      allocatableMiB = 3256;
      kubeletConfig = {
        systemReserved = { memory = "256Mi"; cpu = "250m"; };
        kubeReserved = { memory = "256Mi"; cpu = "250m"; };
        evictionHard = {
          "memory.available" = "200Mi";
          "nodefs.available" = "10%";
          "imagefs.available" = "15%";
          "nodefs.inodesFree" = "5%";
        };
        evictionSoft = { "memory.available" = "300Mi"; };
        evictionSoftGracePeriod = { "memory.available" = "1m30s"; };
        evictionMaxPodGracePeriod = 30;
      };
    };
  }
  {
    name = "8 GB board scales the reservations";
    actual = (lib.kubelet.sizing { memoryMiB = 8192; gpuMemMiB = 16; }).kubeletConfig.systemReserved.memory
      + " " + (lib.kubelet.sizing { memoryMiB = 8192; gpuMemMiB = 16; }).kubeletConfig.evictionHard."memory.available";
    expected = "490Mi 408Mi";
  }
  {
    name = "too little RAM is rejected";
    actual = (builtins.tryEval (lib.kubelet.sizing { memoryMiB = 1024; gpuMemMiB = 128; }).allocatableMiB).success;
    expected = false;
  }
]
