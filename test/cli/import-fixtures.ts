/** The existing headscale the import tests take over: its config.yaml (host paths) and HuJSON policy. */

export const POLICY = `// The home tailnet's policy (HuJSON: comments and trailing commas).
{
  "groups": {
    "group:admins": ["alice@",], // alice administers
  },
  "tagOwners": {
    "tag:server": ["group:admins",],
  },
  /* Admins reach everything; bob reaches the servers' web port only. */
  "acls": [
    {"action": "accept", "src": ["group:admins"], "dst": ["*:*"],},
    {"action": "accept", "src": ["bob@"], "dst": ["tag:server:443"],},
  ],
  "ssh": [
    {"action": "accept", "src": ["group:admins"], "dst": ["tag:server"], "users": ["root"],},
  ],
}
`;

/** A config.yaml as it sits in the host's /etc/headscale (host paths); ports are loopback. */
export function hostConfig(p: { http: number; metrics: number; grpc: number; stun: number }): string {
  return `# An existing headscale's config (as config-example.yaml, edited)
server_url: https://hs.example.org
listen_addr: 127.0.0.1:${p.http}
metrics_listen_addr: 127.0.0.1:${p.metrics}
grpc_listen_addr: 127.0.0.1:${p.grpc}
grpc_allow_insecure: false
noise:
  private_key_path: /var/lib/headscale/noise_private.key
prefixes:
  v4: 100.77.0.0/16
  v6: fd7a:115c:a1e0:77::/64
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: "home"
    region_name: "Home embedded DERP"
    verify_clients: true
    stun_listen_addr: "127.0.0.1:${p.stun}"
    private_key_path: /var/lib/headscale/derp_server_private.key
    automatically_add_embedded_derp_region: true
  urls: []
  paths: []
  auto_update_enabled: true
  update_frequency: 6h
disable_check_updates: true
node:
  expiry: 0
  ephemeral:
    inactivity_timeout: 45m
  routes:
    ha:
      probe_interval: 15s
      probe_timeout: 5s
database:
  type: sqlite
  debug: false
  gorm:
    prepare_stmt: true
  sqlite:
    path: /var/lib/headscale/db.sqlite
    write_ahead_log: true
tls_cert_path: ""
tls_key_path: ""
log:
  level: debug
  format: text
policy:
  mode: file
  path: /etc/headscale/acl.hujson
dns:
  magic_dns: true
  base_domain: ts.example.net
  override_local_dns: true
  nameservers:
    global:
      - 9.9.9.9
    split:
      home.arpa:
        - 192.168.1.1
  search_domains: [home.arpa]
  extra_records: []
unix_socket: /var/run/headscale/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
taildrop:
  enabled: true
# Not a headscale setting: import must name it, not drop it.
frobnicate_level: 3
`;
}
