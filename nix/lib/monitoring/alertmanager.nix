# Alertmanager on the monitoring host: the alerts of rules.nix, by e-mail
# through the site's SMTP relay. The config is an attrset (the NixOS module
# writes it as JSON, which is valid YAML, and runs `amtool check-config` on
# it at build time).
#
# The SMTP password never enters the store: the config names it as the
# literal "$SMTP_PASSWORD" (passwordPlaceholder), and the NixOS module
# substitutes it at service start with envsubst, from its environmentFile
# (nixos/profiles/monitoring.nix: <secretsDir>/alertmanager.env). envsubst
# replaces every `$NAME` and `${NAME}` in the file, so the rendered config
# must hold no other `$`: render throws if it does (Go templates could use
# `$` variables; the templates here do not). The value is pasted inside a
# JSON string, so the password must not contain `"` or `\`.
#
# Routing: one e-mail per alert name and node (group_by), critical alerts
# repeated hourly while they fire, warnings every repeatInterval (4 h).
# Inhibition: while a node is down (NodeDown), its other alerts are held
# back (they fire once its buffered metrics arrive, see rules.nix); an alert
# whose cause is already mailed for the same node is held back too.
{ helpers }:
let
  inherit (builtins) concatStringsSep isList match replaceStrings toJSON;
  inherit (helpers) optionalAttrs;

  passwordVariable = "SMTP_PASSWORD";
  passwordPlaceholder = "$" + passwordVariable;

  # [ sources targets ]: an alert named in sources inhibits the alerts named
  # in targets (null: every other alert) on the same node.
  inhibitions = [
    # The node (or its link) is down: only NodeDown says something new.
    [ [ "NodeDown" ] null ]
    # Under-voltage and heat are why the firmware throttles; the cause is
    # what the operator fixes.
    [ [ "SocUnderVoltage" "SocTemperatureHigh" ] [ "SocThrottled" ] ]
    # Failed deliveries are why the queue is stuck.
    [ [ "AlertDeliveryFailing" ] [ "AlertQueueStuck" ] ]
  ];
  names = ns: if builtins.length ns == 1 then ''alertname="${builtins.head ns}"'' else ''alertname=~"${concatStringsSep "|" ns}"'';
  notNames = ns: if builtins.length ns == 1 then ''alertname!="${builtins.head ns}"'' else ''alertname!~"${concatStringsSep "|" ns}"'';
  inhibitRule = i:
    let sources = builtins.elemAt i 0; targets = builtins.elemAt i 1;
    in {
      source_matchers = [ (names sources) ];
      target_matchers = [ (if targets == null then notNames sources else names targets) ];
      equal = [ "node" ];
    };

  # Everything but $SMTP_PASSWORD removed: what envsubst would still see.
  strayDollar = cfg: match ".*[$].*" (replaceStrings [ passwordPlaceholder ] [ "" ] (toJSON cfg)) != null;
in
{
  inherit passwordVariable passwordPlaceholder;

  # One Alertmanager per site: no HA peers, so no gossip listener (by
  # default it would bind 0.0.0.0:9094).
  flags = [ "--cluster.listen-address=" ];

  render =
    { to # an address or a list of addresses
    , from
    , smarthost # "host:port" of the relay: 587 (STARTTLS) or 465 (TLS)
    , username ? null # SMTP AUTH user; the password is $SMTP_PASSWORD
    , requireTls ? true
    , caFile ? null # CA of the relay's certificate, if not a public one
    , hello ? "localhost" # EHLO name
    , groupWait ? "30s"
    , groupInterval ? "5m"
    , repeatInterval ? "4h"
    , criticalRepeatInterval ? "1h"
    }:
    let
      toList = if isList to then to else [ to ];
      cfg = {
        route = {
          receiver = "email";
          group_by = [ "alertname" "node" ];
          group_wait = groupWait;
          group_interval = groupInterval;
          repeat_interval = repeatInterval;
          routes = [{
            matchers = [ ''severity="critical"'' ];
            repeat_interval = criticalRepeatInterval;
          }];
        };
        receivers = [{
          name = "email";
          email_configs = [
            ({
              to = concatStringsSep ", " toList;
              inherit from smarthost hello;
              require_tls = requireTls;
              send_resolved = true;
              headers.Subject = ''[edgewatch] {{ template "email.default.subject" . }}'';
            }
            // optionalAttrs (username != null) {
              auth_username = username;
              auth_password = passwordPlaceholder;
            }
            // optionalAttrs (caFile != null) {
              tls_config.ca_file = caFile;
            })
          ];
        }];
        inhibit_rules = map inhibitRule inhibitions;
      };
    in
    if toList == [ ] then throw "alertmanager: `to` is empty; give at least one recipient address"
    else if !(builtins.isString smarthost) || match ".+:[0-9]+" smarthost == null then
      throw "alertmanager: smarthost \"${toString smarthost}\" needs to be host:port, e.g. \"smtp.example.org:587\""
    else if username != null && !requireTls then
      throw "alertmanager: username is set but requireTls is false: the password would cross the network in clear"
    else if strayDollar cfg then
      throw "alertmanager: a `$` in the settings (${toJSON cfg}) would be rewritten by envsubst at service start; only ${passwordPlaceholder} may contain one"
    else cfg;
}
