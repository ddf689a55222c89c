# Every edgewatch host: static network from the site description, SSH keys
# only, firewall from nix/lib/site.nix, bounded generations and GC, metrics
# and log shipping (edgewatch.observability). Values are mkDefault (srvos
# habit) so a host can override them without mkForce.
{ config, lib, ... }:
let
  cfg = config.edgewatch.base;
  host = config.edgewatch.host;
  site = config.edgewatch.site;
in
{
  options.edgewatch.base = {
    enable = lib.mkEnableOption "the settings every edgewatch host shares";
    staticNetwork = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Configure the wired interface statically from the site description
        (systemd-networkd). VM tests turn this off: the test driver assigns
        the addresses itself.
      '';
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      # networking.hostName is set by the caller (nixos/hosts.nix, or the VM
      # test driver): edgewatch.host is looked up by it, so defaulting it
      # from edgewatch.host here would be circular.
      networking.domain = lib.mkDefault site.domain;

      # Only what the host's role needs (nix/lib/site.nix `firewallFor`).
      networking.firewall = {
        enable = true;
        allowedTCPPorts = host.firewall.tcp;
        allowedUDPPorts = host.firewall.udp;
      };

      # Keys only. nixos/modules/services/networking/ssh/sshd.nix
      # (settings is the RFC 42 sshd_config attrset).
      services.openssh = {
        enable = true;
        openFirewall = false; # port 22 is in host.firewall
        settings = {
          PasswordAuthentication = false;
          KbdInteractiveAuthentication = false;
          PermitRootLogin = "prohibit-password";
        };
      };
      users.users.root.openssh.authorizedKeys.keys = site.adminKeys;
      users.mutableUsers = false;

      # Bounded disk use on a 32 GB SD card: nixos/modules/services/misc/nix-gc.nix.
      nix.gc = {
        automatic = lib.mkDefault true;
        dates = lib.mkDefault "weekly";
        options = lib.mkDefault "--delete-older-than 14d";
      };
      nix.settings = {
        experimental-features = [ "nix-command" "flakes" ];
        auto-optimise-store = lib.mkDefault true;
      };
      services.journald.extraConfig = lib.mkDefault "SystemMaxUse=200M";

      # node exporter, promtail, and the metrics agent on hosts other than
      # the monitoring host: nixos/modules/observability.nix.
      edgewatch.observability.enable = true;

      documentation.enable = lib.mkDefault false;
      time.timeZone = lib.mkDefault "UTC";
      system.stateVersion = lib.mkDefault "25.11";
    }

    (lib.mkIf cfg.staticNetwork {
      networking.useDHCP = false;
      networking.useNetworkd = true;
      networking.nameservers = site.network.nameservers;
      systemd.network.networks."10-lan" = {
        # By name, not Type=ether: the pods' veth pairs are Ethernet too and
        # belong to flannel. end0 on a Pi 4, enp*/eth* on PCs.
        matchConfig.Name = [ "en*" "eth*" ];
        address = [ "${host.address}/${toString site.network.prefixLength}" ];
        gateway = [ site.network.gateway ];
      };
    })
  ]);
}
