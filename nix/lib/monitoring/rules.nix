# Alert rules for the central Prometheus, as an attrset (a rule file; JSON is
# valid YAML). Every alert has a `promtool test rules` case in
# nix/tests/monitoring/rules.test.yml, and every metric used here must be
# kept by series.nix (checked by .ci/observability-checks.sh).
#
# Series carry `node` (the agent's external label, or a target label in the
# central-scrape mode), `role`, and on detector/watchdog series `camera`.
#
# While a node's link is down nothing from it arrives, so the only alert
# that can fire for it then is NodeDown; its other alerts fire once its
# backlog arrives (they use windows of a few minutes, so a condition that
# lasted through the outage still shows).
{ helpers }:
let
  inherit (builtins) concatStringsSep;
  inherit (helpers) optional;

  # toString 0.1 is "0.100000" in Nix; PromQL reads either, people prefer 0.1.
  num = x:
    if !(builtins.isFloat x) then toString x
    else
      let
        s = toString x;
        frac = builtins.match "(-?[0-9]+[.][0-9]*[1-9])0*" s;
        whole = builtins.match "(-?[0-9]+)[.]0*" s;
      in
      if frac != null then builtins.head frac else if whole != null then builtins.head whole else s;

  alert = name: { expr, for ? "0m", severity, summary, description }: {
    alert = name;
    inherit expr for;
    labels = { inherit severity; };
    annotations = { inherit summary description; };
  };
in
{
  render =
    { nodes
    , spoolMountPoint ? "/"
    , socTemperatureCelsius ? 75
    , spoolFreeRatio ? 0.10
    , inferenceSkippedRatio ? 0.2
    , uploadQueueDepth ? 50
    , alertOldestPendingSeconds ? 900
    , metricsLagSeconds ? 300
    }:
    let
      # A vector with one element per expected node: nodes that send nothing
      # at all have no series to alert on, so the site's host list is the
      # reference.
      expected = concatStringsSep " or " (map (n: ''label_replace(vector(1), "node", "${n}", "", "")'') nodes);
      fs = ''mountpoint="${spoolMountPoint}"'';
      pct = x: toString (builtins.floor (x * 100 + 0.5));
    in
    {
      groups = [
        {
          name = "edgewatch-nodes";
          rules =
            optional (nodes != [ ])
              (alert "NodeDown" {
                expr = "(${expected}) unless on (node) (max by (node) (up{job=\"node\"}) == 1)";
                for = "5m";
                severity = "critical";
                summary = "Node {{ $labels.node }} sends no metrics";
                description = "No node-exporter data from {{ $labels.node }} for 5 minutes: the node, its metrics agent or its link is down. Buffered metrics arrive when the link returns.";
              })
            ++ [
              (alert "SocTemperatureHigh" {
                expr = "max by (node) (node_thermal_zone_temp) > ${num socTemperatureCelsius}";
                for = "5m";
                severity = "warning";
                summary = "SoC of {{ $labels.node }} at {{ $value }} °C";
                description = "The Pi 4 firmware starts capping the ARM clock at 80 °C (hard limit 85 °C). Check the case, fan and airflow.";
              })
              (alert "SocThrottled" {
                expr = ''max by (node, condition) (edgewatch_pi_throttled{when="now", condition=~"throttled|arm_freq_capped|soft_temp_limit"}) == 1'';
                for = "5m";
                severity = "warning";
                summary = "{{ $labels.node }} is throttled ({{ $labels.condition }})";
                description = "The firmware reports {{ $labels.condition }} (get_throttled); inference slows down and frames get skipped.";
              })
              (alert "SocUnderVoltage" {
                expr = ''max by (node) (edgewatch_pi_throttled{when="now", condition="under_voltage"}) == 1'';
                for = "1m";
                severity = "warning";
                summary = "{{ $labels.node }} is under-voltage";
                description = "The supply is below 4.63 V: replace the power supply or cable (SD-card corruption risk).";
              })
              (alert "SpoolFilling" {
                expr = "node_filesystem_avail_bytes{${fs}} / node_filesystem_size_bytes{${fs}} < ${num spoolFreeRatio}";
                for = "10m";
                severity = "warning";
                summary = "Spool file system of {{ $labels.node }} is {{ $value | humanizePercentage }} free";
                description = "Less than ${pct spoolFreeRatio} % free on ${spoolMountPoint}, which holds /var/spool/edgewatch. Below clip.min-free-space the detector stops writing clips.";
              })
              (alert "SpoolFullWithin24h" {
                expr = "predict_linear(node_filesystem_avail_bytes{${fs}}[6h], 24 * 3600) < 0";
                for = "30m";
                severity = "warning";
                summary = "Spool file system of {{ $labels.node }} fills within a day";
                description = "At the rate of the last 6 hours, ${spoolMountPoint} is full within 24 hours. Check archive uploads (edgewatch_upload_queue_depth) and the watchdog.";
              })
            ];
        }
        {
          name = "edgewatch-detector";
          rules = [
            (alert "DetectorDown" {
              expr = ''up{job="edgewatch-detector"} == 0'';
              for = "2m";
              severity = "critical";
              summary = "Detector on {{ $labels.node }} does not answer";
              description = "The node's agent cannot scrape the detector (:9870): the pod or unit is down or crash-looping.";
            })
            (alert "CameraDown" {
              expr = "edgewatch_camera_up == 0";
              for = "2m";
              severity = "critical";
              summary = "Camera {{ $labels.camera }} on {{ $labels.node }} is down";
              description = "No frames from the camera for 2 minutes; the detector keeps reconnecting (edgewatch_camera_reconnects_total).";
            })
            (alert "InferenceFallingBehind" {
              expr = "sum by (node, camera) (rate(edgewatch_frames_inference_skipped_total[5m])) / (sum by (node, camera) (rate(edgewatch_frames_inferred_total[5m])) + sum by (node, camera) (rate(edgewatch_frames_inference_skipped_total[5m]))) > ${num inferenceSkippedRatio}";
              for = "10m";
              severity = "warning";
              summary = "{{ $labels.node }} skips {{ $value | humanizePercentage }} of sampled frames";
              description = "Inference cannot keep up with the sample rate (clips are unaffected, detection is coarser). Check SocThrottled and CPU use.";
            })
            (alert "ClipWriteFailing" {
              expr = "sum by (node, camera, reason) (increase(edgewatch_clip_write_failed_total[15m])) > 0";
              severity = "critical";
              summary = "Clips fail to be written on {{ $labels.node }} ({{ $labels.reason }})";
              description = "Events are detected but their clips are not in the spool.";
            })
            (alert "ArchiveBacklog" {
              expr = "edgewatch_upload_queue_depth > ${num uploadQueueDepth}";
              for = "30m";
              severity = "warning";
              summary = "{{ $value }} clips on {{ $labels.node }} wait for upload";
              description = "Uploads to the archive are failing or too slow; the spool fills up (see uploads_total by result).";
            })
          ];
        }
        {
          name = "edgewatch-alerts";
          rules = [
            (alert "WatchdogDown" {
              expr = ''up{job="edgewatch-watchdog"} == 0'';
              for = "2m";
              severity = "critical";
              summary = "Watchdog on {{ $labels.node }} does not answer";
              description = "Nobody mails the clips of {{ $labels.node }}: the watchdog (:9871) is down.";
            })
            (alert "AlertDeliveryFailing" {
              # alerts_failed counts only recipients given up after 5xx
              # rejections; an unreachable relay or 4xx is retried forever
              # and shows only in smtp_errors_total, so both count.
              expr = "(sum by (node) (rate(edgewatch_smtp_errors_total[10m])) > 0 or sum by (node) (rate(edgewatch_alerts_failed_total[10m])) > 0) unless on (node) sum by (node) (rate(edgewatch_alerts_sent_total[10m])) > 0";
              for = "5m";
              severity = "critical";
              summary = "Alert e-mails from {{ $labels.node }} fail";
              description = "Every alert e-mail attempt failed for 15 minutes; see edgewatch_smtp_errors_total by class.";
            })
            (alert "AlertQueueStuck" {
              expr = "edgewatch_alert_oldest_pending_seconds > ${num alertOldestPendingSeconds}";
              for = "5m";
              severity = "critical";
              summary = "An alert on {{ $labels.node }} has waited {{ $value | humanizeDuration }}";
              description = "The oldest pending alert e-mail is older than ${num alertOldestPendingSeconds} s.";
            })
            # The watchdog's own view of the spool: over watch.spool-max-size
            # or under watch.spool-min-free with nothing it may evict. On a
            # large SD card this comes long before SpoolFilling.
            (alert "SpoolOverLimit" {
              expr = "edgewatch_spool_over_limit == 1";
              for = "10m";
              severity = "warning";
              summary = "Spool of {{ $labels.node }} is over its limits";
              description = "The spool is above watch.spool-max-size or below watch.spool-min-free, and every clip in it still waits for its e-mail or its upload, so none is evicted. Check AlertQueueStuck and ArchiveBacklog; below clip.min-free-space the detector stops writing clips.";
            })
          ];
        }
        {
          name = "edgewatch-metrics-pipeline";
          rules = [
            (alert "MetricsBacklogGrowing" {
              # max_over_time: a lagging agent's samples themselves arrive
              # late, so look at what arrived for the last 15 minutes.
              expr = "max by (node) (max_over_time((prometheus_remote_storage_highest_timestamp_in_seconds - ignoring (remote_name, url) group_right prometheus_remote_storage_queue_highest_sent_timestamp_seconds)[15m:1m])) > ${num metricsLagSeconds}";
              severity = "warning";
              summary = "Metrics from {{ $labels.node }} are {{ $value | humanizeDuration }} behind";
              description = "The node's agent buffers in its WAL faster than it can send (slow or flapping link). Data is kept for 30 h.";
            })
            (alert "MetricsRemoteWriteFailing" {
              expr = "sum by (node) (rate(prometheus_remote_storage_samples_failed_total[5m])) > 0";
              for = "15m";
              severity = "warning";
              summary = "{{ $labels.node }} loses metrics samples";
              description = "The monitoring host rejects samples from {{ $labels.node }} (non-retryable errors): they are lost. See the agent's log.";
            })
          ];
        }
      ];
    };
}
