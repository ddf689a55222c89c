# The central Prometheus on the monitoring host.
#
# mode = "agent" (default): nodes push with remote-write (agent.nix); this
#   Prometheus runs with --web.enable-remote-write-receiver and scrapes only
#   itself and the monitoring host's own node exporter.
# mode = "scrape": the older design, for sites with good links: this
#   Prometheus scrapes every host's node exporter and the camera nodes'
#   detector and watchdog itself, with the same keep-lists (so dashboards and
#   rules see the same series) and sample_limit as a safety net. The keep
#   rules run after the scrape here: they save storage, not bandwidth.
#
# out_of_order_time_window: after a long outage a node's backlog arrives
# hours late while other nodes keep the head block moving; without the
# window, samples older than the head (about 1-2 h) are rejected as "out of
# bounds" and a day-long outage would lose everything but the last hour.
{ helpers, series, relabel }:
let
  inherit (helpers) optionalAttrs optionals;

  job = { name, jobSeries, staticConfigs, extra ? { } }: {
    job_name = name;
    static_configs = staticConfigs;
    metric_relabel_configs = relabel.forJob jobSeries;
  } // extra;
in
{
  flags = [
    # Nodes push here: POST /api/v1/write.
    "--web.enable-remote-write-receiver"
  ];

  render =
    { node
    , self ? "127.0.0.1:9090"
    , nodeExporter ? "127.0.0.1:9100"
    , scrapeInterval ? "15s"
    , evaluationInterval ? "15s"
    , ruleFiles ? [ ]
    , mode ? "agent"
      # Scrape mode: [ { name; address; camera ? null; } ], the hosts other
      # than this one.
    , hosts ? [ ]
    , ports ? { nodeExporter = 9100; detector = 9870; watchdog = 9871; }
    , sampleLimit ? 2000
    , outOfOrderTimeWindow ? "30h"
    , alertmanagers ? [ ]
    }:
    let
      cameraHosts = builtins.filter (h: (h.camera or null) != null) hosts;
      at = h: port: {
        targets = [ "${h.address}:${toString port}" ];
        labels = { node = h.name; } // optionalAttrs ((h.camera or null) != null) { inherit (h) camera; };
      };
      limited = { sample_limit = sampleLimit; };
    in
    if !(builtins.elem mode [ "agent" "scrape" ]) then throw "monitoring: mode must be \"agent\" or \"scrape\", not \"${mode}\""
    else {
      global = {
        scrape_interval = scrapeInterval;
        evaluation_interval = evaluationInterval;
      };
      storage.tsdb.out_of_order_time_window = outOfOrderTimeWindow;
      rule_files = ruleFiles;
      scrape_configs =
        [
          (job {
            name = "prometheus";
            jobSeries = series.central;
            staticConfigs = [{ targets = [ self ]; labels = { inherit node; }; }];
          })
          (job {
            name = "node";
            jobSeries = series.node;
            staticConfigs = [{ targets = [ nodeExporter ]; labels = { inherit node; }; }]
              ++ optionals (mode == "scrape") (map (h: at h ports.nodeExporter) hosts);
            extra = limited;
          })
        ]
        ++ optionals (mode == "scrape" && cameraHosts != [ ]) [
          (job { name = "edgewatch-detector"; jobSeries = series.detector; staticConfigs = map (h: at h ports.detector) cameraHosts; extra = limited; })
          (job { name = "edgewatch-watchdog"; jobSeries = series.watchdog; staticConfigs = map (h: at h ports.watchdog) cameraHosts; extra = limited; })
        ];
    }
    // optionalAttrs (alertmanagers != [ ]) {
      alerting.alertmanagers = [{ static_configs = [{ targets = alertmanagers; }]; }];
    };
}
