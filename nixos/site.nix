# The example site: one line per host. Everything else (k3s role and server
# address, node label, firewall, config.txt, kubelet sizing, scrape targets,
# rollout order) is derived from this by nix/lib/site.nix.
# Adding a camera node is one line under `hosts`, e.g.
#   pi4-node-03 = { address = "192.168.50.13"; camera = true; };
{
  name = "site-a";
  domain = "site-a.edgewatch.example";
  network = {
    prefixLength = 24;
    gateway = "192.168.50.1";
    nameservers = [ "192.168.50.1" ];
  };
  # Public keys of the operators; password logins are disabled everywhere.
  # Placeholder: replace with the site's real keys before the first flash.
  adminKeys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdgewatchExamplePlaceholderKeyReplaceMe0 ops@site-a"
  ];
  canary = "pi4-node-01";
  hosts = {
    pi4-node-01 = { address = "192.168.50.11"; camera = true; };
    pi4-node-02 = { address = "192.168.50.12"; camera = true; };
    k3s-server = { address = "192.168.50.2"; role = "server"; };
    monitor = { address = "192.168.50.3"; role = "monitoring"; };
  };
}
