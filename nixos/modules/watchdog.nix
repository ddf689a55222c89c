# services.edgewatch.watchdog: `edgewatch watch` as a hardened systemd unit
# (mails each finished clip, deletes it once delivered and archived).
# `settings` are the documented keys (README, "The watchdog"); the SMTP
# password goes in through
# `credentialFiles.SMTP__PASSWORD = "/run/secrets/smtp-password";`.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.edgewatch.watchdog;
  role = import ./role.nix { inherit lib pkgs; };
  unit = (import ../../nix/lib/units.nix).watchdog;
  args = { role = "watchdog"; inherit (unit) subcommand defaultListen; };
in
{
  options.services.edgewatch.watchdog = role.mkOptions args;

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (role.mkConfig (args // { inherit cfg; }))
    {
      # The watchdog never touches devices.
      systemd.services.edgewatch-watchdog.serviceConfig.PrivateDevices = true;
    }
  ]);
}
