# Shared option and unit builder for the two edgewatch roles (one binary,
# `edgewatch detect` / `edgewatch watch`), in the style of nixpkgs'
# mkRancherModule: detector.nix and watchdog.nix call it and add what only
# their role needs. Layout and naming follow attic's nixos/atticd.nix:
# free-form `settings` (RFC 42, pkgs.formats.toml), `configFile` checked at
# build time by `edgewatch check-config`, secrets only through files outside
# the store (environmentFile / credentialFiles).
#
# Unverified here (no nixpkgs, nothing builds on the authoring machine):
# every option below was checked by reading nixpkgs sources at or near the
# pinned revision, see the comments; the unit itself has only been read, not
# run. tests/vm/ runs it.
{ lib, pkgs }:
let
  settingsFormat = pkgs.formats.toml { };

  # A secret file must stay out of the world-readable store: reject store
  # paths, and take strings only (a Nix path literal would be copied into
  # the store the moment it is interpolated).
  secretPath = lib.types.addCheck lib.types.str
    (p: lib.hasPrefix "/" p && !(lib.hasPrefix "${builtins.storeDir}/" p));
in
{
  inherit settingsFormat;

  mkOptions = { role, subcommand, defaultListen }: {
    enable = lib.mkEnableOption "the edgewatch ${role} (`edgewatch ${subcommand}`)";

    package = lib.mkPackageOption pkgs "edgewatch" { };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          camera = "cam0";
          log.format = "json";
          http.listen = "${defaultListen}";
          archive.target = "s3://clips/site-a";
        }
      '';
      description = ''
        edgewatch configuration, written as TOML to {option}`configFile`.
        Keys are the documented kebab-case keys of `edgewatch.toml`; unknown
        keys are rejected by `edgewatch check-config` when the system is built.
        Never put secrets here: the file lands in the world-readable Nix store.
        Use {option}`credentialFiles` or {option}`environmentFile`.
      '';
    };

    configFile = lib.mkOption {
      type = lib.types.path;
      description = ''
        Path of the edgewatch TOML configuration. Defaults to the file
        generated from {option}`settings`.
      '';
    };

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Run `edgewatch check-config` on {option}`configFile` while building the
        system, so an invalid configuration fails `nixos-rebuild` instead of the
        service. Turn off only for a configuration that depends on files
        present on the target alone.
      '';
    };

    environmentFile = lib.mkOption {
      type = lib.types.nullOr secretPath;
      default = null;
      example = "/run/secrets/edgewatch-${role}.env";
      description = ''
        File of `KEY=value` lines loaded into the unit's environment
        (systemd `EnvironmentFile=`), e.g. `AWS_ACCESS_KEY_ID=...` or
        `EDGEWATCH_S3__REGION=...`. Must be an absolute path outside the Nix
        store, given as a string.
      '';
    };

    credentialFiles = lib.mkOption {
      type = lib.types.attrsOf secretPath;
      default = { };
      example = {
        S3__ACCESS_KEY_ID = "/run/secrets/s3-access-key-id";
        S3__SECRET_ACCESS_KEY = "/run/secrets/s3-secret-access-key";
      };
      description = ''
        Secret files handed to the service with systemd `LoadCredential=`.
        Each `NAME = path` becomes the credential `NAME` and the variable
        `EDGEWATCH_<NAME>_FILE` pointing at it, which is how edgewatch reads
        secrets (`EDGEWATCH_S3__SECRET_ACCESS_KEY_FILE`,
        `EDGEWATCH_SMTP__PASSWORD_FILE`). The service never sees the original
        path, and the files may stay root-only.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the TCP port of `http.listen` (/metrics, /healthz, /readyz).";
    };
  };

  mkConfig = { role, subcommand, defaultListen, cfg }:
    let
      unit = "edgewatch-${role}";
      generated = settingsFormat.generate "edgewatch-${role}.toml" cfg.settings;
      # When cross-compiling, the target's binary cannot run on the build
      # machine: check with the build platform's edgewatch instead.
      checker =
        if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform
        then cfg.package
        else pkgs.buildPackages.edgewatch;
      # attic's checkedConfigFile, nixos/atticd.nix: the file, and what of the world a build
      # sandbox has. No camera, spool, archive directory or secrets there; the model only when
      # it is a store path (then it is in the sandbox, by the string's context).
      modelInStore = lib.hasPrefix builtins.storeDir (cfg.settings.model.source or "");
      skip = [ "source" "spool" "archive" "smtp" ] ++ lib.optional (!modelInStore) "model";
      checkedConfigFile = pkgs.runCommand "edgewatch-${role}-checked.toml" { } ''
        ${lib.getExe checker} check-config --role ${role} --skip ${lib.concatStringsSep "," skip} ${cfg.configFile}
        ln -s ${cfg.configFile} $out
      '';
      configPath = if cfg.checkConfig then checkedConfigFile else cfg.configFile;
      spoolDir = cfg.settings.clip.spool-dir or (import ../../nix/lib/units.nix).spoolDir;
      listen = cfg.settings.http.listen or defaultListen;
      port = lib.toInt (lib.last (lib.splitString ":" listen));
    in
    {
      assertions = [
        {
          assertion = cfg.environmentFile == null || !(lib.hasPrefix builtins.storeDir cfg.environmentFile);
          message = ''
            services.edgewatch.${role}.environmentFile points into the Nix store,
            where every user can read it. Put the file outside the store (for
            example decrypted by agenix/sops-nix to /run/secrets/...) and set the
            option to that path as a string.
          '';
        }
      ];

      services.edgewatch.${role}.configFile = lib.mkDefault generated;

      users.groups.edgewatch = { };

      # Shared spool: the detector writes clips, the watchdog mails and
      # deletes them. Both units run as dynamic users with the static group
      # `edgewatch`; setgid keeps new files in that group.
      # (An attrset, not a rules line: both roles define it, and equal
      # definitions merge instead of producing a duplicate tmpfiles line.)
      systemd.tmpfiles.settings."10-edgewatch".${spoolDir}.d = {
        mode = "2770";
        user = "root";
        group = "edgewatch";
      };

      networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall port;

      systemd.services.${unit} = {
        description = "edgewatch ${role}";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        environment = lib.mapAttrs' (name: _: lib.nameValuePair "EDGEWATCH_${name}_FILE" "%d/${name}") cfg.credentialFiles;
        serviceConfig = {
          ExecStart = "${lib.getExe cfg.package} ${subcommand} --config ${configPath}";
          Restart = "on-failure";
          RestartSec = "5s";
          EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
          LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentialFiles;

          DynamicUser = true;
          SupplementaryGroups = [ "edgewatch" ];
          # nix/lib/units.nix lists it (tests/integration/units.rs runs in this shape).
          StateDirectory = unit;
          ReadWritePaths = [ spoolDir ];
          UMask = "0007";

          # Hardening, as attic's atticd unit; systemd.exec(5).
          CapabilityBoundingSet = [ "" ];
          AmbientCapabilities = [ "" ];
          NoNewPrivileges = true;
          ProtectSystem = "strict";
          ProtectHome = true;
          PrivateTmp = true;
          ProtectClock = true;
          ProtectControlGroups = true;
          ProtectHostname = true;
          ProtectKernelLogs = true;
          ProtectKernelModules = true;
          ProtectKernelTunables = true;
          ProtectProc = "invisible";
          ProcSubset = "pid";
          RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          MemoryDenyWriteExecute = true;
          RemoveIPC = true;
          SystemCallArchitectures = "native";
          SystemCallFilter = [ "@system-service" "~@privileged" ];
          DevicePolicy = "closed";
          PrivateDevices = lib.mkDefault true;
        };
      };
    };
}
