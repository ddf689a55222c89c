# The series edgewatch keeps, per scrape job: the single list that the
# node agent's keep rules (agent.nix), the central scrape mode (central.nix),
# the alert rules (rules.nix) and the dashboards (nix/dashboards/*.json) agree
# on. .ci/observability-checks.sh checks both directions: every metric a
# dashboard or rule uses is kept here (or it would be dropped at the node),
# and every name kept here is used by a dashboard or rule (or it costs link
# bandwidth for nothing).
#
# A job's `metrics` are exact metric names (histograms: the `_bucket` series
# only; no dashboard uses `_sum`/`_count`). `labelFilters` keep only some
# values of one label of some metrics (everything else of those metrics is
# dropped); `dropLabels` removes labels that carry no information we use
# (long cAdvisor cgroup paths and image names), which also shortens every
# sample on the wire.
#
# `pending` marks jobs whose targets cannot run on the CI machine (cAdvisor
# needs a kubelet): their names are taken on trust and listed as pending in
# .ci/observability-checks.sh's output.
let
  # Histogram bucket bounds kept for the percentile panels, out of the
  # detector's exponential buckets (src/telemetry.rs: latency 1 ms x 2^k up to
  # 8.192 s, clip writes 50 ms x 2^k, uploads 10 ms x 2^k; 13-15 each).
  # histogram_quantile interpolates linearly inside a bucket, so dropping
  # every other bound only coarsens a percentile to within a factor of 4;
  # the latency range a Pi 4 sees (2-512 ms) keeps every bound. Bounds are
  # written as Prometheus 3 normalises `le` (a float with a decimal point,
  # never "1"), so the same strings match under 2.x and 3.x.
  inferenceBuckets = [ "0.002" "0.004" "0.008" "0.016" "0.032" "0.064" "0.128" "0.256" "0.512" "+Inf" ];
  clipWriteBuckets = [ "0.2" "0.8" "1.6" "3.2" "6.4" "12.8" "+Inf" ];
  uploadBuckets = [ "0.16" "0.64" "2.56" "10.24" "40.96" "+Inf" ];
  # The watchdog's clip -> SMTP accepted latency (src/telemetry.rs: 5 ms x
  # 2^k, 16 bounds up to 163.84 s): inotify, then an SMTP dialogue carrying
  # a clip of a few MB, a fraction of a second to tens of seconds on a thin
  # uplink. Every bound from 0.16 to 20.48 s is kept, every other one
  # outside. Retries take minutes; AlertQueueStuck covers those.
  alertLatencyBuckets = [ "0.04" "0.16" "0.32" "0.64" "1.28" "2.56" "5.12" "10.24" "20.48" "81.92" "+Inf" ];
in
{
  node = {
    description = "node exporter (collectors filtered at the source too, see node-exporter.nix)";
    metrics = [
      "node_boot_time_seconds"
      "node_cpu_scaling_frequency_hertz"
      "node_cpu_seconds_total"
      "node_disk_io_time_seconds_total"
      "node_disk_read_bytes_total"
      "node_disk_written_bytes_total"
      "node_filesystem_avail_bytes"
      "node_filesystem_size_bytes"
      "node_load1"
      "node_load15"
      "node_load5"
      "node_memory_MemAvailable_bytes"
      "node_memory_MemTotal_bytes"
      "node_network_receive_bytes_total"
      "node_network_transmit_bytes_total"
      "node_thermal_zone_temp"
      # textfile collector, written by nixos/hardware/pi-throttled.sh
      "edgewatch_pi_throttled"
    ];
    # CPU busy = 1 - idle; iowait shows a struggling SD card. The other six
    # modes x 4 cores would be 24 more series per node.
    labelFilters = [{ metrics = [ "node_cpu_seconds_total" ]; label = "mode"; keep = [ "idle" "iowait" ]; }];
    dropLabels = [ ];
    pending = false;
  };

  detector = {
    description = "edgewatch detect (:9870)";
    metrics = [
      "edgewatch_backbone_latency_seconds_bucket"
      "edgewatch_backbone_runs_total"
      "edgewatch_backbone_skipped_total"
      "edgewatch_build_info"
      "edgewatch_camera_outage_seconds_total"
      "edgewatch_camera_reconnects_total"
      "edgewatch_camera_up"
      "edgewatch_clip_bytes_total"
      "edgewatch_clip_write_duration_seconds_bucket"
      "edgewatch_clip_write_failed_total"
      "edgewatch_clips_written_total"
      "edgewatch_events_total"
      "edgewatch_frames_captured_total"
      "edgewatch_frames_decode_failed_total"
      "edgewatch_frames_dropped_total"
      "edgewatch_frames_inference_skipped_total"
      "edgewatch_frames_inferred_total"
      "edgewatch_head_latency_seconds_bucket"
      "edgewatch_inference_cpu_seconds_total"
      "edgewatch_model_fetches_total"
      "edgewatch_model_info"
      "edgewatch_motion_active"
      "edgewatch_motion_rebaseline_total"
      "edgewatch_sample_fps"
      "edgewatch_sample_rate_changes_total"
      "edgewatch_sample_rate_floor"
      "edgewatch_score"
      "edgewatch_upload_duration_seconds_bucket"
      "edgewatch_upload_queue_depth"
      "edgewatch_uploads_total"
    ];
    labelFilters = [
      { metrics = [ "edgewatch_backbone_latency_seconds_bucket" "edgewatch_head_latency_seconds_bucket" ]; label = "le"; keep = inferenceBuckets; }
      { metrics = [ "edgewatch_clip_write_duration_seconds_bucket" ]; label = "le"; keep = clipWriteBuckets; }
      { metrics = [ "edgewatch_upload_duration_seconds_bucket" ]; label = "le"; keep = uploadBuckets; }
    ];
    dropLabels = [ ];
    pending = false;
  };

  watchdog = {
    description = "edgewatch watch (:9871)";
    # Not kept: alerts_suppressed_pending, clips_deleted/failed_total,
    # spool_bytes, spool_evicted_total, watch_mode, spool_scans_total and build_info (the
    # detector's is kept): no dashboard or rule reads them.
    metrics = [
      "edgewatch_alert_latency_seconds_bucket"
      "edgewatch_alert_oldest_pending_seconds"
      "edgewatch_alert_queue_depth"
      "edgewatch_alerts_failed_total"
      "edgewatch_alerts_sent_total"
      "edgewatch_alerts_suppressed_total"
      "edgewatch_smtp_errors_total"
      "edgewatch_spool_over_limit"
    ];
    labelFilters = [
      { metrics = [ "edgewatch_alert_latency_seconds_bucket" ]; label = "le"; keep = alertLatencyBuckets; }
    ];
    dropLabels = [ ];
    pending = false;
  };

  cadvisor = {
    description = "cAdvisor inside the kubelet (:10250/metrics/cadvisor), edgewatch containers only";
    metrics = [
      "container_cpu_cfs_periods_total"
      "container_cpu_cfs_throttled_periods_total"
      "container_cpu_usage_seconds_total"
      "container_memory_working_set_bytes"
    ];
    labelFilters = [{
      metrics = [
        "container_cpu_cfs_periods_total"
        "container_cpu_cfs_throttled_periods_total"
        "container_cpu_usage_seconds_total"
        "container_memory_working_set_bytes"
      ];
      label = "container";
      keep = [ "detector" "watchdog" ];
    }];
    dropLabels = [ "id" "image" "name" ];
    pending = true;
  };

  # The agent's own pipeline metrics (remote-write queue, WAL): the
  # metrics-pipeline dashboard and the backlog alert.
  agent = {
    description = "the node's Prometheus agent (self-scrape)";
    metrics = [
      "prometheus_agent_active_series"
      "prometheus_remote_storage_bytes_total"
      "prometheus_remote_storage_highest_timestamp_in_seconds"
      "prometheus_remote_storage_queue_highest_sent_timestamp_seconds"
      "prometheus_remote_storage_samples_failed_total"
      "prometheus_remote_storage_samples_pending"
      "prometheus_remote_storage_samples_retried_total"
      "prometheus_remote_storage_samples_total"
      "prometheus_remote_storage_shards"
      "prometheus_tsdb_wal_segment_current"
      "prometheus_wal_watcher_current_segment"
    ];
    labelFilters = [ ];
    dropLabels = [ ];
    pending = false;
  };

  # The central Prometheus' own ingestion metrics (self-scrape, not sent
  # over any link).
  central = {
    description = "the central Prometheus (self-scrape)";
    metrics = [
      "prometheus_tsdb_head_out_of_order_samples_appended_total"
      "prometheus_tsdb_head_samples_appended_total"
      "prometheus_tsdb_head_series"
    ];
    labelFilters = [ ];
    dropLabels = [ ];
    pending = false;
  };

  # Series Prometheus makes for every target itself. Metric relabelling does
  # not apply to them, so the agent drops the other three in write_relabel.
  synthetic = [ "up" "scrape_samples_post_metric_relabeling" "scrape_samples_scraped" ];
}
