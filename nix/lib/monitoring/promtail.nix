# promtail on every host: the systemd journal, and on k3s nodes the pods'
# container logs (/var/log/pods, CRI format), pushed to Loki on the
# monitoring host. Stream labels are few and bounded: node, role, job, and
# unit / namespace+container, component (detector|watchdog) and camera for
# edgewatch, level. Everything else stays in the line: edgewatch logs JSON
# (log.format = "json"), so `| json` in LogQL reaches every field.
#
# Bandwidth: Loki's push API sends snappy-compressed protobuf batches
# (batchwait/batchsize below); DEBUG lines are dropped on the node.
{ helpers }:
let
  inherit (helpers) optional optionalAttrs;

  openh264Line = ''^\[OpenH264\] this = \S+ (?P<level>Error|Warning|Info|Debug|Detail):'';
  levelTemplate = ''{{ with .Value }}{{ if eq . "Warning" }}WARN{{ else if eq . "Error" }}ERROR{{ else if eq . "Info" }}INFO{{ else if eq . "Detail" }}TRACE{{ else }}{{ ToUpper . }}{{ end }}{{ end }}'';

  # edgewatch's JSON lines (tracing-subscriber's JSON format): the level
  # becomes a label, the rest stays queryable with `| json`.
  edgewatchStages = { component, camera }: [
    { json.expressions = { level = "level"; }; }
    # Not JSON: OpenH264 prints its own warning to stderr when a clip encoder
    # starts ("[OpenH264] this = 0x..., Warning:..."), before its log level
    # can be set through the Rust binding.
    { regex.expression = openh264Line; }
    # Its level in tracing's spelling, so {level="WARN"} finds both kinds.
    # `with`: no level extracted leaves none (an empty result drops the key).
    { template = { source = "level"; template = levelTemplate; }; }
    { labels = { level = ""; }; }
    { static_labels = { inherit component; } // optionalAttrs (camera != null) { inherit camera; }; }
    { drop = { source = "level"; value = "DEBUG"; drop_counter_reason = "debug"; }; }
  ];
in
{
  render =
    { node
    , role
    , camera ? null
    , lokiPushUrl
    , journal ? true
    , pods ? role != "monitoring"
    , listen ? { address = "127.0.0.1"; port = 9080; }
    , positions ? "/var/cache/promtail/positions.yaml"
    }: {
      server = { http_listen_address = listen.address; http_listen_port = listen.port; grpc_listen_port = 0; };
      positions.filename = positions;
      clients = [{
        url = lokiPushUrl;
        external_labels = { inherit node role; };
        # One request a few seconds at most; larger batches compress better.
        batchwait = "5s";
        batchsize = 262144;
        # Keep retrying through a link outage (about 1 h with these
        # numbers); the positions file resumes from where it stopped after
        # a promtail restart, as long as the journal still holds the lines.
        backoff_config = { min_period = "1s"; max_period = "1m"; max_retries = 70; };
      }];
      scrape_configs =
        optional journal
          {
            job_name = "journal";
            journal = {
              max_age = "24h";
              labels.job = "systemd-journal";
            };
            relabel_configs = [
              { source_labels = [ "__journal__systemd_unit" ]; target_label = "unit"; }
              { source_labels = [ "__journal_priority_keyword" ]; target_label = "priority"; }
            ];
            pipeline_stages = [
              # services.edgewatch.{detector,watchdog} (runtime = "systemd").
              { match = { selector = ''{unit="edgewatch-detector.service"}''; stages = edgewatchStages { component = "detector"; inherit camera; }; }; }
              { match = { selector = ''{unit="edgewatch-watchdog.service"}''; stages = edgewatchStages { component = "watchdog"; inherit camera; }; }; }
            ];
          }
        ++ optional pods {
          job_name = "pods";
          static_configs = [{
            targets = [ "localhost" ];
            labels = { job = "pods"; __path__ = "/var/log/pods/*/*/*.log"; };
          }];
          pipeline_stages = [
            { cri = { }; }
            {
              regex = {
                source = "filename";
                expression = "^/var/log/pods/(?P<namespace>[^_/]+)_(?P<pod>[^_/]+)_[^/]+/(?P<container>[^/]+)/";
              };
            }
            { labels = { namespace = ""; container = ""; }; }
            { match = { selector = ''{namespace="edgewatch", container="detector"}''; stages = edgewatchStages { component = "detector"; inherit camera; }; }; }
            { match = { selector = ''{namespace="edgewatch", container="watchdog"}''; stages = edgewatchStages { component = "watchdog"; inherit camera; }; }; }
          ];
        };
    };
}
