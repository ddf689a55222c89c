# Site description -> per-host settings. Pure: no nixpkgs, no NixOS.
#
# Input (nixos/site.nix):
#   { name; domain; network = { prefixLength; gateway; nameservers; };
#     adminKeys = [ "ssh-ed25519 ..." ];
#     canary ? <first camera node by name>;
#     hosts.<hostName> = { address; role ? "node"; camera ? false;
#                          system ? (aarch64-linux for nodes, else x86_64-linux);
#                          gpuMem ? null; memoryMiB ? 4096; };
#     alerts ? { to = [ "ops@..." ]; from; smarthost = "relay:587";
#                username ? null; requireTls ? true; caFile ? null; }; }
# (`alerts` is read as is by nixos/profiles/monitoring.nix: e-mail
# notifications through Alertmanager; without it there are none.)
#
# Output: { hosts.<hostName> = { ...everything a host's modules need... };
#           server; monitor; nodes; rollout; scrape; lokiPushUrl; }
# A bad description throws here, at evaluation, with the fix in the message.
{ helpers ? import ./helpers.nix
, configTxt ? import ./config-txt.nix { inherit helpers; }
, kubelet ? import ./kubelet.nix { inherit helpers; }
}:
let
  inherit (builtins) attrNames concatStringsSep filter head length sort;
  inherit (helpers) duplicates filterAttrs mapAttrsToList optional optionalAttrs;

  roles = [ "node" "server" "monitoring" ];

  # Ports, one list per role. Kept here (not in the modules) so the golden
  # test pins what each host exposes.
  ports = {
    ssh = 22;
    k3sApi = 6443;
    kubelet = 10250;
    flannelVxlan = 8472; # UDP
    nodeExporter = 9100;
    detector = 9870;
    watchdog = 9871;
    prometheus = 9090;
    loki = 3100;
    grafana = 3000;
    alertmanager = 9093; # loopback only: not in any firewall list
  };

  firewallFor = role: {
    node = { tcp = [ ports.ssh ports.kubelet ports.nodeExporter ]; udp = [ ports.flannelVxlan ]; };
    server = { tcp = [ ports.ssh ports.k3sApi ports.kubelet ports.nodeExporter ]; udp = [ ports.flannelVxlan ]; };
    monitoring = { tcp = [ ports.ssh ports.nodeExporter ports.prometheus ports.loki ports.grafana ]; udp = [ ]; };
  }.${role};

  normaliseHost = name: h:
    let
      role = h.role or "node";
      camera = h.camera or false;
    in
    if !(builtins.elem role roles) then
      throw "site: host ${name} has role \"${role}\"; use one of ${concatStringsSep ", " roles}"
    else if !(h ? address) then
      throw "site: host ${name} has no address; add `address = \"a.b.c.d\";`"
    else if camera && role != "node" then
      throw "site: host ${name} has camera = true but role ${role}; only role \"node\" runs the detector"
    else {
      inherit name role camera;
      inherit (h) address;
      system = h.system or (if role == "node" then "aarch64-linux" else "x86_64-linux");
      memoryMiB = h.memoryMiB or 4096;
      gpuMemOverride = h.gpuMem or null;
    };

  onlyOne = role: hosts:
    let names = attrNames (filterAttrs (_: h: h.role == role) hosts);
    in
    if length names == 1 then head names
    else throw "site: expected exactly one host with role \"${role}\", found ${toString (length names)} (${concatStringsSep ", " names})";
in
{
  inherit ports;

  build = site:
    let
      hosts0 = builtins.mapAttrs normaliseHost site.hosts;
      addresses = mapAttrsToList (_: h: h.address) hosts0;
      dupAddresses = duplicates addresses;

      server = onlyOne "server" hosts0;
      monitor = onlyOne "monitoring" hosts0;
      nodes = sort builtins.lessThan (attrNames (filterAttrs (_: h: h.role == "node") hosts0));
      cameraNodes = filter (n: hosts0.${n}.camera) nodes;

      canary =
        if site ? canary then
          (if builtins.elem site.canary nodes then site.canary
          else throw "site: canary ${site.canary} is not a host with role \"node\"")
        else if cameraNodes != [ ] then head cameraNodes
        else if nodes != [ ] then head nodes
        else null;

      serverUrl = "https://${hosts0.${server}.address}:${toString ports.k3sApi}";
      monitorAddress = hosts0.${monitor}.address;

      expand = name: h:
        let isNode = h.role == "node";
        in
        h // {
          fqdn = "${name}.${site.domain}";
          inherit (site) network;
          firewall = firewallFor h.role;
          k3s =
            if isNode then { role = "agent"; serverAddr = serverUrl; nodeLabels = optional h.camera "camera=true"; }
            else if h.role == "server" then { role = "server"; serverAddr = ""; nodeLabels = [ ]; }
            else null;
          lokiPushUrl = "http://${monitorAddress}:${toString ports.loki}/loki/api/v1/push";
        }
        // optionalAttrs isNode (
          let gpuMem = configTxt.gpuMemFor { inherit (h) camera; override = h.gpuMemOverride; };
          in {
            inherit gpuMem;
            configTxt = configTxt.render (configTxt.forNode { inherit (h) camera; inherit gpuMem; });
            kubelet = (kubelet.sizing { inherit (h) memoryMiB; gpuMemMiB = gpuMem; }).kubeletConfig;
          }
        );
    in
    if dupAddresses != [ ] then
      throw "site: address(es) ${concatStringsSep ", " dupAddresses} used by more than one host"
    else {
      inherit server monitor nodes cameraNodes;
      hosts = builtins.mapAttrs expand hosts0;
      rollout = {
        inherit canary;
        rest = filter (n: n != canary) nodes;
      };
      # Prometheus static targets; the edgewatch ports are hostPorts of the
      # DaemonSet on camera nodes (k3s/daemonset.yaml).
      scrape = {
        node = map (n: "${hosts0.${n}.address}:${toString ports.nodeExporter}") (attrNames hosts0);
        edgewatch = builtins.concatMap
          (n: [
            "${hosts0.${n}.address}:${toString ports.detector}"
            "${hosts0.${n}.address}:${toString ports.watchdog}"
          ])
          cameraNodes;
      };
    };
}
