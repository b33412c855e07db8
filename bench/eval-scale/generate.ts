/** A synthetic fleet of n hosts (every tenth a subnet router) and a policy of `rules` ACLs. */
import { writeFileSync } from "node:fs";
import path from "node:path";

export function generateFleet(dir: string, n: number, rules = 100): void {
  const acls: string[] = [];
  for (let i = 0; i < rules; i++)
    acls.push(`    - action: accept\n      src: [${i % 2 ? "group:admins" : "tag:server"}]\n      dst: ["tag:t${i % 10}:${1000 + i}", "10.${i % 250}.0.0/16:22"]`);
  writeFileSync(path.join(dir, "fleet.yaml"), `coordinator:
  host: vps
  serverUrl: https://hs.example.com
users: [alice, bob]
admins: [alice]
policy:
  groups:
    group:admins: [alice@]
  tagOwners:
${[...Array(10).keys()].map((i) => `    tag:t${i}: [group:admins]`).join("\n")}
    tag:server: [group:admins]
    tag:router: [group:admins]
  acls:
    - action: accept
      src: [group:admins]
      dst: ["*:*"]
${acls.join("\n")}
`);
  writeFileSync(path.join(dir, "vps.yaml"), "imports: [coordinator, reverse-proxy, derp-relay, client]\naddress: 203.0.113.10\nderp:\n  derpPort: 8443\n  certMode: manual\ntailscale:\n  tags: [tag:server]\n");
  for (let i = 1; i < n; i++) {
    const kind = i % 10;
    const name = `h${i}`;
    if (kind === 0) {
      const net = `10.${i % 250}.${Math.floor(i / 250)}.0/24`;
      writeFileSync(path.join(dir, `${name}.yaml`), `imports: [subnet-router]\naddress: 192.0.2.${i % 250}\nlan: [${net}]\nsubnet-router:\n  routes: [${net}]\ntailscale:\n  tags: [tag:router]\n`);
    } else {
      writeFileSync(path.join(dir, `${name}.yaml`), `imports: [client]\naddress: 198.51.100.${i % 250}\ntailscale:\n  ${kind % 2 ? "user: alice" : `tags: [tag:t${kind}]`}\n  acceptRoutes: true\n`);
    }
  }
}

