# What the NixOS modules give each role's systemd unit beyond the user's
# settings: the subcommand and default listen address, the settings the module
# adds under the user's (lib.mkDefault), the directories systemd makes for it,
# and the spool the unit may write. Pure, so the integration tests run the
# binary in a sandbox of exactly this shape (tests/integration/units.rs):
# read-only root (ProtectSystem=strict), only these paths writable.
let
  spoolDir = "/var/spool/edgewatch";
in
{
  inherit spoolDir;
  detector = {
    unit = "edgewatch-detector";
    subcommand = "detect";
    defaultListen = "0.0.0.0:9870";
    # The frame journal lives in the unit's RuntimeDirectory (memory, kept
    # across restarts by RuntimeDirectoryPreserve).
    settings.clip.frame-journal = "/run/edgewatch-detector/frames";
    # systemd.exec(5): StateDirectory -> /var/lib/NAME, CacheDirectory ->
    # /var/cache/NAME, RuntimeDirectory -> /run/NAME, each owned by the unit's
    # (dynamic) user. model.cache-dir defaults to /var/cache/edgewatch/model.
    directories = {
      StateDirectory = "edgewatch-detector";
      CacheDirectory = "edgewatch";
      RuntimeDirectory = "edgewatch-detector";
      RuntimeDirectoryPreserve = "restart";
    };
  };
  watchdog = {
    unit = "edgewatch-watchdog";
    subcommand = "watch";
    defaultListen = "0.0.0.0:9871";
    settings = { };
    directories.StateDirectory = "edgewatch-watchdog";
  };
}
