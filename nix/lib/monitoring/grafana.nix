# Grafana provisioning, as the attrsets services.grafana.provision.
# {datasources,dashboards}.settings take (nixos/modules/services/monitoring/
# grafana.nix writes them as YAML). The dashboards in nix/dashboards/ refer to
# the datasources by these uids, which .ci/observability-checks.sh checks.
{
  datasourceUids = { prometheus = "prometheus"; loki = "loki"; };

  datasources = { prometheusUrl, lokiUrl, scrapeInterval ? "15s" }: {
    apiVersion = 1;
    datasources = [
      {
        name = "Prometheus";
        type = "prometheus";
        uid = "prometheus";
        access = "proxy";
        url = prometheusUrl;
        isDefault = true;
        editable = false;
        # $__rate_interval is max(4 x this, the panel's step): rates always
        # span at least four samples.
        jsonData = { timeInterval = scrapeInterval; httpMethod = "POST"; };
      }
      {
        name = "Loki";
        type = "loki";
        uid = "loki";
        access = "proxy";
        url = lokiUrl;
        editable = false;
        jsonData.maxLines = 1000;
      }
    ];
  };

  dashboards = { path }: {
    apiVersion = 1;
    providers = [{
      name = "edgewatch";
      type = "file";
      folder = "edgewatch";
      disableDeletion = true;
      allowUiUpdates = false;
      updateIntervalSeconds = 60;
      options.path = path;
    }];
  };
}
