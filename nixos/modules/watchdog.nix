# services.edgewatch.watchdog: `edgewatch watch` as a hardened systemd unit
# (mails each finished clip, deletes it once delivered and archived).
# Its own config section is not designed yet, so `settings` stays free-form;
# the SMTP password goes in through
# `credentialFiles.SMTP__PASSWORD = "/run/secrets/smtp-password";`.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.edgewatch.watchdog;
  role = import ./role.nix { inherit lib pkgs; };
  args = { role = "watchdog"; subcommand = "watch"; defaultListen = "0.0.0.0:9871"; };
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
