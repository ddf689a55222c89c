# Golden tests of nix/lib/monitoring (the rendered configs themselves are
# checked by promtool, and run, in .ci/observability-checks.sh).
{ lib }:
let
  inherit (lib) monitoring helpers;
  inherit (builtins) attrNames concatMap elem filter length map sort;

  agentMin = monitoring.agent.render { node = "n1"; remoteWriteUrl = "http://10.0.0.3:9090/api/v1/write"; };
  agentCam = monitoring.agent.render {
    node = "cam-a";
    camera = "cam0";
    remoteWriteUrl = "http://10.0.0.3:9090/api/v1/write";
    scrapeInterval = "5s";
    cadvisor = { target = "10.0.0.11:10250"; serverName = "cam-a"; tokenFile = "/run/credentials/prometheus.service/kubelet-token"; caFile = "/run/credentials/prometheus.service/kubelet-ca"; };
  };
  jobNames = cfg: map (j: j.job_name) cfg.scrape_configs;
  jobNamed = cfg: name: builtins.head (filter (j: j.job_name == name) cfg.scrape_configs);

  site = {
    hosts = [
      { name = "cam-a"; address = "10.0.0.11"; camera = "cam0"; }
      { name = "plain"; address = "10.0.0.13"; }
    ];
  };
  centralAgent = monitoring.central.render { node = "mon"; ruleFiles = [ "/etc/rules.json" ]; };
  centralScrape = monitoring.central.render ({ node = "mon"; mode = "scrape"; sampleLimit = 1500; } // site);

  rules = monitoring.rules.render { nodes = [ "a" "b" ]; };
  alerts = concatMap (g: map (r: r.alert) g.rules) rules.groups;
  ruleNamed = r: name: builtins.head (filter (x: x.alert == name) (concatMap (g: g.rules) r.groups));

  promtailCam = monitoring.promtail.render { node = "cam-a"; role = "node"; camera = "cam0"; lokiPushUrl = "http://10.0.0.3:3100/loki/api/v1/push"; };
  promtailMon = monitoring.promtail.render { node = "mon"; role = "monitoring"; lokiPushUrl = "http://127.0.0.1:3100/loki/api/v1/push"; };

  real = lib.site.build (import ../../nixos/site.nix);
  realAgent = monitoring.hosts.agentFor { built = real; name = "pi4-node-01"; cadvisor = { tokenFile = "/t"; caFile = "/c"; }; };
  realCentral = monitoring.hosts.centralFor { built = real; mode = "scrape"; ruleFiles = [ "/r.json" ]; };

  jobs = filter (n: n != "synthetic") (attrNames monitoring.series);
  allKept = concatMap (j: monitoring.series.${j}.metrics) jobs;

  am = monitoring.alertmanager;
  amRelay = {
    to = [ "ops@site.example" "oncall@site.example" ];
    from = "monitor@site.example";
    smarthost = "relay.site.example:587";
  };
  amAuth = am.render (amRelay // { username = "monitor"; caFile = "/etc/relay-ca.pem"; });
  amOpen = am.render { to = "ops@site.example"; from = "monitor@site.example"; smarthost = "10.0.0.1:25"; requireTls = false; };
  emailOf = cfg: builtins.head (builtins.head cfg.receivers).email_configs;
  # Alert names in a matcher like alertname="A" or alertname=~"A|B".
  matcherNames = m:
    let r = builtins.match ''alertname(=|!=|=~|!~)"([^"]*)"'' m;
    in if r == null then [ "<not an alertname matcher: ${m}>" ] else filter builtins.isString (builtins.split "[|]" (builtins.elemAt r 1));
  inhibitNames = concatMap (r: concatMap matcherNames (r.source_matchers ++ r.target_matchers)) amAuth.inhibit_rules;
  # split gives [ before match after match ... ]: one string more than matches.
  countOf = needle: hay: length (filter builtins.isList (builtins.split needle hay));
  # The label lists of every `by (...)` in a PromQL expression.
  byClauses = expr: map builtins.head (filter builtins.isList (builtins.split "by [(]([^)]*)[)]" expr));
  fails = v: !(builtins.tryEval (builtins.deepSeq v true)).success;
in
[
  {
    name = "agent without camera: node + self, external labels, remote write without metadata";
    actual = {
      inherit (agentMin) global;
      jobs = jobNames agentMin;
      targets = map (j: (builtins.head j.static_configs).targets) agentMin.scrape_configs;
      rw = removeAttrs (builtins.head agentMin.remote_write) [ "write_relabel_configs" ];
    };
    expected = {
      global = { scrape_interval = "15s"; external_labels = { node = "n1"; }; };
      jobs = [ "node" "prometheus-agent" ];
      targets = [ [ "127.0.0.1:9100" ] [ "127.0.0.1:9095" ] ];
      rw = {
        url = "http://10.0.0.3:9090/api/v1/write";
        name = "monitoring";
        remote_timeout = "30s";
        metadata_config.send = false;
        queue_config = {
          max_samples_per_send = 2000;
          batch_send_deadline = "60s";
          capacity = 10000;
          min_shards = 1;
          max_shards = 4;
          min_backoff = "1s";
          max_backoff = "30s";
        };
      };
    };
  }
  {
    name = "agent on a camera node: detector and watchdog with the camera label, cAdvisor over TLS";
    actual = {
      jobs = jobNames agentCam;
      detectorLabels = (builtins.head (jobNamed agentCam "edgewatch-detector").static_configs).labels;
      cadvisor = removeAttrs (jobNamed agentCam "cadvisor") [ "metric_relabel_configs" ];
      interval = agentCam.global.scrape_interval;
    };
    expected = {
      jobs = [ "node" "prometheus-agent" "edgewatch-detector" "edgewatch-watchdog" "cadvisor" ];
      detectorLabels = { camera = "cam0"; };
      cadvisor = {
        job_name = "cadvisor";
        static_configs = [{ targets = [ "10.0.0.11:10250" ]; labels = { }; }];
        scheme = "https";
        metrics_path = "/metrics/cadvisor";
        authorization.credentials_file = "/run/credentials/prometheus.service/kubelet-token";
        tls_config = { ca_file = "/run/credentials/prometheus.service/kubelet-ca"; server_name = "cam-a"; };
      };
      interval = "5s";
    };
  }
  {
    name = "keep rules: names, then label filters via a temporary mark, then label drops";
    actual = (jobNamed agentCam "cadvisor").metric_relabel_configs;
    expected = [
      {
        source_labels = [ "__name__" ];
        regex = "container_cpu_cfs_periods_total|container_cpu_cfs_throttled_periods_total|container_cpu_usage_seconds_total|container_memory_working_set_bytes";
        action = "keep";
      }
      {
        source_labels = [ "__name__" "container" ];
        regex = "(container_cpu_cfs_periods_total|container_cpu_cfs_throttled_periods_total|container_cpu_usage_seconds_total|container_memory_working_set_bytes);(detector|watchdog)";
        target_label = "__tmp_edgewatch_keep";
        replacement = "1";
        action = "replace";
      }
      {
        source_labels = [ "__name__" "__tmp_edgewatch_keep" ];
        regex = "(container_cpu_cfs_periods_total|container_cpu_cfs_throttled_periods_total|container_cpu_usage_seconds_total|container_memory_working_set_bytes);";
        action = "drop";
      }
      { regex = "__tmp_edgewatch_keep"; action = "labeldrop"; }
      { regex = "id|image|name"; action = "labeldrop"; }
    ];
  }
  {
    name = "histogram bounds are regex-escaped";
    actual = builtins.elemAt (jobNamed agentCam "edgewatch-detector").metric_relabel_configs 1;
    expected = {
      source_labels = [ "__name__" "le" ];
      regex = "(edgewatch_backbone_latency_seconds_bucket|edgewatch_head_latency_seconds_bucket);(0\\.002|0\\.004|0\\.008|0\\.016|0\\.032|0\\.064|0\\.128|0\\.256|0\\.512|\\+Inf)";
      target_label = "__tmp_edgewatch_keep";
      replacement = "1";
      action = "replace";
    };
  }
  {
    name = "agent drops two of the five synthetic series and `instance` on the way out";
    actual = (builtins.head agentMin.remote_write).write_relabel_configs;
    expected = [
      { source_labels = [ "__name__" ]; regex = "scrape_duration_seconds|scrape_series_added"; action = "drop"; }
      { regex = "instance"; action = "labeldrop"; }
    ];
  }
  {
    name = "agent flags: WAL path, compression, 30 h retention for day-long outages";
    actual = monitoring.agent.flags { walDir = "/var/lib/prometheus2/data-agent"; };
    expected = [
      "--storage.agent.path=/var/lib/prometheus2/data-agent"
      "--storage.agent.wal-compression"
      "--storage.agent.retention.max-time=30h"
    ];
  }
  {
    name = "node exporter: defaults off, ten collectors, devices narrowed";
    actual = { inherit (monitoring.nodeExporter) collectors; flags = monitoring.nodeExporter.extraFlags { }; };
    expected = {
      collectors = [ "cpu" "cpufreq" "diskstats" "filesystem" "loadavg" "meminfo" "netdev" "stat" "textfile" "thermal_zone" ];
      flags = [
        "--collector.disable-defaults"
        "--web.disable-exporter-metrics"
        "--collector.filesystem.mount-points-exclude=^/.+"
        "--collector.diskstats.device-exclude="
        "--collector.diskstats.device-include=^(mmcblk[0-9]+|sd[a-z]+|vd[a-z]+|nvme[0-9]+n[0-9]+)$"
        "--collector.netdev.device-exclude="
        "--collector.netdev.device-include=^(end[0-9]+|eth[0-9]+|en[a-z0-9]+|wlan[0-9]+)$"
        "--collector.textfile.directory=/var/lib/prometheus-node-exporter-text"
      ];
    };
  }
  {
    name = "central, agent mode: itself and the local node exporter, out-of-order window, rules";
    actual = {
      jobs = jobNames centralAgent;
      nodeTargets = (jobNamed centralAgent "node").static_configs;
      inherit (centralAgent) storage rule_files;
      limit = (jobNamed centralAgent "node").sample_limit;
      flags = monitoring.central.flags;
    };
    expected = {
      jobs = [ "prometheus" "node" ];
      nodeTargets = [{ targets = [ "127.0.0.1:9100" ]; labels = { node = "mon"; }; }];
      storage.tsdb.out_of_order_time_window = "30h";
      rule_files = [ "/etc/rules.json" ];
      limit = 2000;
      flags = [ "--web.enable-remote-write-receiver" ];
    };
  }
  {
    name = "central, scrape mode: every host with node/camera labels and sample_limit";
    actual = {
      jobs = jobNames centralScrape;
      node = (jobNamed centralScrape "node").static_configs;
      detector = (jobNamed centralScrape "edgewatch-detector").static_configs;
      limit = (jobNamed centralScrape "edgewatch-watchdog").sample_limit;
    };
    expected = {
      jobs = [ "prometheus" "node" "edgewatch-detector" "edgewatch-watchdog" ];
      node = [
        { targets = [ "127.0.0.1:9100" ]; labels = { node = "mon"; }; }
        { targets = [ "10.0.0.11:9100" ]; labels = { node = "cam-a"; camera = "cam0"; }; }
        { targets = [ "10.0.0.13:9100" ]; labels = { node = "plain"; }; }
      ];
      detector = [{ targets = [ "10.0.0.11:9870" ]; labels = { node = "cam-a"; camera = "cam0"; }; }];
      limit = 1500;
    };
  }
  {
    name = "central: unknown mode is an evaluation error";
    actual = (builtins.tryEval (builtins.deepSeq (monitoring.central.render { node = "m"; mode = "pull"; }) true)).success;
    expected = false;
  }
  {
    name = "rules: the alerts, in order";
    actual = alerts;
    expected = [
      "NodeDown"
      "SocTemperatureHigh"
      "SocThrottled"
      "SocUnderVoltage"
      "SpoolFilling"
      "SpoolFullWithin24h"
      "DetectorDown"
      "CameraDown"
      "InferenceFallingBehind"
      "ClipWriteFailing"
      "ArchiveBacklog"
      "WatchdogDown"
      "AlertDeliveryFailing"
      "AlertQueueStuck"
      "SpoolOverLimit"
      "MetricsBacklogGrowing"
      "MetricsRemoteWriteFailing"
    ];
  }
  {
    name = "rules: NodeDown lists the site's hosts; no hosts, no NodeDown";
    actual = {
      expr = (ruleNamed rules "NodeDown").expr;
      empty = elem "NodeDown" (concatMap (g: map (r: r.alert) g.rules) (monitoring.rules.render { nodes = [ ]; }).groups);
    };
    expected = {
      expr = ''(label_replace(vector(1), "node", "a", "", "") or label_replace(vector(1), "node", "b", "", "")) unless on (node) (max by (node) (up{job="node"}) == 1)'';
      empty = false;
    };
  }
  {
    name = "rules: thresholds and the spool mount point are arguments";
    actual = let r = monitoring.rules.render { nodes = [ "a" ]; spoolMountPoint = "/var"; spoolFreeRatio = 0.15; socTemperatureCelsius = 70; }; in {
      spool = (ruleNamed r "SpoolFilling").expr;
      temp = (ruleNamed r "SocTemperatureHigh").expr;
    };
    expected = {
      spool = ''node_filesystem_avail_bytes{mountpoint="/var"} / node_filesystem_size_bytes{mountpoint="/var"} < 0.15'';
      temp = "max by (node) (node_thermal_zone_temp) > 70";
    };
  }
  {
    name = "alertmanager: one group per alert name and node, critical alerts repeated hourly";
    actual = amAuth.route;
    expected = {
      receiver = "email";
      group_by = [ "alertname" "node" ];
      group_wait = "30s";
      group_interval = "5m";
      repeat_interval = "4h";
      routes = [{ matchers = [ ''severity="critical"'' ]; repeat_interval = "1h"; }];
    };
  }
  {
    name = "alertmanager: e-mail receiver, TLS required, AUTH with the $SMTP_PASSWORD placeholder, relay CA";
    actual = { inherit (amAuth) receivers; flags = am.flags; };
    expected = {
      receivers = [{
        name = "email";
        email_configs = [{
          to = "ops@site.example, oncall@site.example";
          from = "monitor@site.example";
          smarthost = "relay.site.example:587";
          hello = "localhost";
          require_tls = true;
          send_resolved = true;
          headers.Subject = ''[edgewatch] {{ template "email.default.subject" . }}'';
          auth_username = "monitor";
          auth_password = "$SMTP_PASSWORD";
          tls_config.ca_file = "/etc/relay-ca.pem";
        }];
      }];
      flags = [ "--cluster.listen-address=" ];
    };
  }
  {
    name = "alertmanager: the password is only ever the placeholder, the one `$` envsubst sees";
    actual = {
      placeholder = am.passwordPlaceholder;
      variable = am.passwordVariable;
      authDollars = countOf "[$]" (builtins.toJSON amAuth);
      authPlaceholders = countOf "[$]SMTP_PASSWORD" (builtins.toJSON amAuth);
      openDollars = countOf "[$]" (builtins.toJSON amOpen);
      openEmail = emailOf amOpen;
    };
    expected = {
      placeholder = "$SMTP_PASSWORD";
      variable = "SMTP_PASSWORD";
      authDollars = 1;
      authPlaceholders = 1;
      openDollars = 0;
      openEmail = {
        to = "ops@site.example";
        from = "monitor@site.example";
        smarthost = "10.0.0.1:25";
        hello = "localhost";
        require_tls = false;
        send_resolved = true;
        headers.Subject = ''[edgewatch] {{ template "email.default.subject" . }}'';
      };
    };
  }
  {
    name = "alertmanager: NodeDown holds back the node's other alerts, causes hold back their effects; every name is a rule";
    actual = {
      rules = amAuth.inhibit_rules;
      unknown = filter (n: !(elem n alerts)) inhibitNames;
    };
    expected = {
      rules = [
        { source_matchers = [ ''alertname="NodeDown"'' ]; target_matchers = [ ''alertname!="NodeDown"'' ]; equal = [ "node" ]; }
        { source_matchers = [ ''alertname=~"SocUnderVoltage|SocTemperatureHigh"'' ]; target_matchers = [ ''alertname="SocThrottled"'' ]; equal = [ "node" ]; }
        { source_matchers = [ ''alertname="AlertDeliveryFailing"'' ]; target_matchers = [ ''alertname="AlertQueueStuck"'' ]; equal = [ "node" ]; }
      ];
      unknown = [ ];
    };
  }
  {
    name = "alertmanager: every alert has a severity the routes know, and keeps the node label it is grouped and inhibited by";
    actual = {
      severities = helpers.unique (concatMap (g: map (r: r.labels.severity) g.rules) rules.groups);
      # Every series carries node; an aggregation keeps it only if it is in the `by`.
      dropsNode = map (r: r.alert) (filter
        (r: builtins.any (labels: builtins.match ".*[(, ]node[,)].*" "(${labels})" == null) (byClauses r.expr))
        (concatMap (g: g.rules) rules.groups));
      byCount = length (concatMap (r: byClauses r.expr) (concatMap (g: g.rules) rules.groups));
    };
    expected = { severities = [ "critical" "warning" ]; dropsNode = [ ]; byCount = 13; };
  }
  {
    name = "alertmanager: intervals are arguments; bad settings are evaluation errors";
    actual = {
      route = removeAttrs (am.render (amRelay // { groupWait = "1s"; groupInterval = "2s"; repeatInterval = "12h"; criticalRepeatInterval = "30m"; })).route [ "receiver" "group_by" ];
      noPort = fails (am.render (amRelay // { smarthost = "relay.site.example"; }));
      noRecipient = fails (am.render (amRelay // { to = [ ]; }));
      clearPassword = fails (am.render (amRelay // { username = "u"; requireTls = false; }));
      dollar = fails (am.render (amRelay // { from = "$USER@site.example"; }));
      ok = fails (am.render amRelay);
    };
    expected = {
      route = { group_wait = "1s"; group_interval = "2s"; repeat_interval = "12h"; routes = [{ matchers = [ ''severity="critical"'' ]; repeat_interval = "30m"; }]; };
      noPort = true;
      noRecipient = true;
      clearPassword = true;
      dollar = true;
      ok = false;
    };
  }
  {
    name = "promtail: journal and pods on a camera node, labels node/role, camera on edgewatch streams";
    actual = {
      jobs = map (j: j.job_name) promtailCam.scrape_configs;
      client = removeAttrs (builtins.head promtailCam.clients) [ "backoff_config" ];
      podPath = (builtins.head (builtins.elemAt promtailCam.scrape_configs 1).static_configs).labels.__path__;
      detectorStages = (builtins.elemAt (builtins.elemAt promtailCam.scrape_configs 1).pipeline_stages 3).match;
      monitorJobs = map (j: j.job_name) promtailMon.scrape_configs;
    };
    expected = {
      jobs = [ "journal" "pods" ];
      client = {
        url = "http://10.0.0.3:3100/loki/api/v1/push";
        external_labels = { node = "cam-a"; role = "node"; };
        batchwait = "5s";
        batchsize = 262144;
      };
      podPath = "/var/log/pods/*/*/*.log";
      detectorStages = {
        selector = ''{namespace="edgewatch", container="detector"}'';
        stages = [
          { json.expressions.level = "level"; }
          { regex.expression = ''^\[OpenH264\] this = \S+ (?P<level>Error|Warning|Info|Debug|Detail):''; }
          {
            template = {
              source = "level";
              template = ''{{ with .Value }}{{ if eq . "Warning" }}WARN{{ else if eq . "Error" }}ERROR{{ else if eq . "Info" }}INFO{{ else if eq . "Detail" }}TRACE{{ else }}{{ ToUpper . }}{{ end }}{{ end }}'';
            };
          }
          { labels.level = ""; }
          { static_labels = { component = "detector"; camera = "cam0"; }; }
          { drop = { source = "level"; value = "DEBUG"; drop_counter_reason = "debug"; }; }
        ];
      };
      monitorJobs = [ "journal" ];
    };
  }
  {
    name = "grafana: datasource uids the dashboards use, file provider";
    actual = {
      uids = map (d: d.uid) (monitoring.grafana.datasources { prometheusUrl = "http://127.0.0.1:9090"; lokiUrl = "http://127.0.0.1:3100"; }).datasources;
      provider = builtins.head (monitoring.grafana.dashboards { path = "/d"; }).providers;
    };
    expected = {
      uids = [ "prometheus" "loki" ];
      provider = {
        name = "edgewatch";
        type = "file";
        folder = "edgewatch";
        disableDeletion = true;
        allowUiUpdates = false;
        updateIntervalSeconds = 60;
        options.path = "/d";
      };
    };
  }
  {
    name = "series: sorted lists, no name kept by two jobs, filters only on kept names";
    actual = {
      sorted = filter
        (j: monitoring.series.${j}.metrics != sort builtins.lessThan monitoring.series.${j}.metrics
          && j != "node")
        jobs;
      duplicates = helpers.duplicates allKept;
      strayFilters = concatMap
        (j: concatMap (f: filter (m: !(elem m monitoring.series.${j}.metrics)) f.metrics) monitoring.series.${j}.labelFilters)
        jobs;
      count = length allKept;
    };
    expected = { sorted = [ ]; duplicates = [ ]; strayFilters = [ ]; count = 73; };
  }
  {
    name = "real site: pi4-node-01's agent scrapes its own address, writes to the monitor";
    actual = {
      targets = map (j: { ${j.job_name} = (builtins.head j.static_configs).targets; }) realAgent.scrape_configs;
      url = (builtins.head realAgent.remote_write).url;
      labels = realAgent.global.external_labels;
      server = (jobNamed realAgent "cadvisor").tls_config.server_name;
    };
    expected = {
      targets = [
        { node = [ "127.0.0.1:9100" ]; }
        { prometheus-agent = [ "127.0.0.1:9095" ]; }
        { edgewatch-detector = [ "192.168.50.11:9870" ]; }
        { edgewatch-watchdog = [ "192.168.50.11:9871" ]; }
        { cadvisor = [ "192.168.50.11:10250" ]; }
      ];
      url = "http://192.168.50.3:9090/api/v1/write";
      labels = { node = "pi4-node-01"; };
      server = "pi4-node-01";
    };
  }
  {
    name = "real site: central scrape mode reaches every other host, NodeDown knows all four";
    actual = {
      node = map (c: c.labels.node) (jobNamed realCentral "node").static_configs;
      detector = map (c: builtins.head c.targets) (jobNamed realCentral "edgewatch-detector").static_configs;
      nodeDown = helpers.hasPrefix
        ''(label_replace(vector(1), "node", "k3s-server", "", "") or label_replace(vector(1), "node", "monitor", "", "") or label_replace(vector(1), "node", "pi4-node-01", "", "") or label_replace(vector(1), "node", "pi4-node-02", "", "")) unless''
        (ruleNamed (monitoring.hosts.rulesFor real) "NodeDown").expr;
    };
    expected = {
      node = [ "monitor" "k3s-server" "pi4-node-01" "pi4-node-02" ];
      detector = [ "192.168.50.11:9870" "192.168.50.12:9870" ];
      nodeDown = true;
    };
  }
  {
    name = "real site: the central Prometheus alerts the local Alertmanager only when asked; its EHLO is the monitor's FQDN";
    actual = {
      enabled = (monitoring.hosts.centralFor { built = real; ruleFiles = [ ]; alertmanager = true; }).alerting;
      disabled = (monitoring.hosts.centralFor { built = real; ruleFiles = [ ]; }) ? alerting;
      hello = (emailOf (monitoring.hosts.alertmanagerFor { built = real; settings = amRelay; })).hello;
    };
    expected = {
      enabled.alertmanagers = [{ static_configs = [{ targets = [ "127.0.0.1:9093" ]; }]; }];
      disabled = false;
      hello = "monitor.site-a.edgewatch.example";
    };
  }
]
