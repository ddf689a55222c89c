# The node's metrics agent: Prometheus in agent mode (no local TSDB, no
# rules), scraping everything on the node over loopback and remote-writing
# only the kept series (series.nix) to the monitoring host.
#
# Why the link carries so little:
#   * collectors filtered at the source (node-exporter.nix);
#   * metric_relabel_configs keep-lists per job, so the WAL and the wire
#     only ever see kept series;
#   * write_relabel_configs drop two of the five synthetic per-target
#     series (metric relabelling cannot touch them) and `instance`;
#   * metadata_config.send = false: no HELP/TYPE/unit every minute;
#   * large batches (max_samples_per_send, batch_send_deadline): remote-write
#     1.0 sends every sample with its full label set, and each request body
#     is one snappy block, so a batch with several scrapes of the same series
#     compresses their repeated labels away. Compression is always snappy in
#     remote-write 1.0 (the protocol mandates it; there is no knob in 2.42).
#
# Outages: remote-write reads from the agent's WAL, so nothing is lost while
# the link is down as long as the WAL still holds the data. The agent
# truncates its WAL every 2 h to the oldest unsent sample, but never keeps
# more than --storage.agent.retention.max-time (default 4 h!); flags below
# sets 30 h so a day-long outage loses nothing. Queue sizing: see queueConfig.
{ helpers, series, relabel }:
let
  inherit (helpers) optional optionals;

  job = { name, target, jobSeries, labels ? { }, extra ? { } }: {
    job_name = name;
    static_configs = [{ targets = [ target ]; inherit labels; }];
    metric_relabel_configs = relabel.forJob jobSeries;
  } // extra;
in
rec {
  # Sized for a Pi behind a thin link (see OBSERVABILITY.md for the figures):
  queueConfig = {
    # 2000 samples per request (default 500 in 2.42): a node sends a few
    # hundred samples a minute, so a request holds several scrapes.
    max_samples_per_send = 2000;
    # ...and waits up to 60 s to fill it (default 5 s). Data reaches the
    # monitoring host up to a minute late; alerts look at windows of
    # several minutes anyway.
    batch_send_deadline = "60s";
    # Per-shard buffer between the WAL reader and the sender.
    capacity = 10000;
    # Catching up after a day offline: ~0.6 M samples (100 series x 5760
    # scrapes) go out in 2000-sample requests; 4 shards are plenty and keep
    # the Pi's CPU and the link calm.
    min_shards = 1;
    max_shards = 4;
    # Retry quickly at first, then every 30 s at most while the link is down,
    # so recovery starts within 30 s of the link coming back.
    min_backoff = "1s";
    max_backoff = "30s";
  };

  # Command-line flags of the agent besides the mode (--agent) and what the
  # NixOS module adds itself (--config.file, --web.listen-address).
  flags = { walDir, walMaxTime ? "30h" }: [
    "--storage.agent.path=${walDir}"
    # Snappy-compressed WAL segments: less SD-card wear and space.
    "--storage.agent.wal-compression"
    # Keep unsent samples up to 30 h (a day-long outage plus the 2 h
    # truncation period plus margin). Older unsent data is deleted.
    "--storage.agent.retention.max-time=${walMaxTime}"
  ];

  # The agent's prometheus.yml, as an attrset (JSON is valid YAML).
  render =
    { node
      # Camera name when this node runs the detector and the watchdog.
    , camera ? null
    , remoteWriteUrl
    , scrapeInterval ? "15s"
    , nodeExporter ? "127.0.0.1:9100"
    , detector ? "127.0.0.1:9870"
    , watchdog ? "127.0.0.1:9871"
      # The agent's own listen address (self-scrape).
    , self ? "127.0.0.1:9095"
      # null, or { target; serverName; tokenFile; caFile; }: the kubelet's
      # cAdvisor endpoint (TLS, bearer token of a ServiceAccount allowed to
      # `get nodes/metrics`).
    , cadvisor ? null
    , queue ? { }
    }:
    let
      cameraLabels = { inherit camera; };
    in
    {
      global = {
        # scrape_timeout defaults to min(10 s, scrape_interval).
        scrape_interval = scrapeInterval;
        # Attached to every series sent: the node it came from. (Not the
        # role: nothing queries it, and every sample would carry it.)
        external_labels = { inherit node; };
      };
      scrape_configs =
        [
          (job { name = "node"; target = nodeExporter; jobSeries = series.node; })
          (job { name = "prometheus-agent"; target = self; jobSeries = series.agent; })
        ]
        ++ optionals (camera != null) [
          (job { name = "edgewatch-detector"; target = detector; jobSeries = series.detector; labels = cameraLabels; })
          (job { name = "edgewatch-watchdog"; target = watchdog; jobSeries = series.watchdog; labels = cameraLabels; })
        ]
        ++ optional (cadvisor != null) (job {
          name = "cadvisor";
          target = cadvisor.target;
          jobSeries = series.cadvisor;
          extra = {
            scheme = "https";
            metrics_path = "/metrics/cadvisor";
            authorization.credentials_file = cadvisor.tokenFile;
            tls_config = { ca_file = cadvisor.caFile; server_name = cadvisor.serverName; };
          };
        });
      remote_write = [{
        url = remoteWriteUrl;
        name = "monitoring";
        remote_timeout = "30s";
        queue_config = queueConfig // queue;
        metadata_config.send = false;
        write_relabel_configs = [
          {
            # Per-target synthetic series: keep `up` and the two sample
            # counts; scrape_duration_seconds and scrape_series_added go.
            source_labels = [ "__name__" ];
            regex = relabel.alternatives [ "scrape_duration_seconds" "scrape_series_added" ];
            action = "drop";
          }
          {
            # Every target is on this node and one per job, so `instance`
            # (127.0.0.1:port) adds nothing to node + job, but remote-write
            # 1.0 repeats it in every sample.
            regex = "instance";
            action = "labeldrop";
          }
        ];
      }];
    };
}
