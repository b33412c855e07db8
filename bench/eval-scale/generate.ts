/**
 * A synthetic fleet of n hosts (every tenth a subnet router) and a policy of `rules` ACLs.
 *
 * The policy is inline in fleet.yaml by default; `policyFile` writes it to policy.hujson
 * (fleet.yaml `policy: ./policy.hujson`, headscale's format), as a policy of 1,000 rules
 * must be (fleet.yaml's YAML limit holds ~120). As a command:
 *
 *   node --import tsx bench/eval-scale/generate.ts DIR [hosts] [rules] [--policy-file]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface GenerateOptions {
  /** Write the policy to policy.hujson and name it in fleet.yaml. @default false */
  policyFile?: boolean;
}

export function generateFleet(dir: string, n: number, rules = 100, opts: GenerateOptions = {}): void {
  const head = `coordinator:
  host: vps
  serverUrl: https://hs.example.com
users: [alice, bob]
admins: [alice]
`;
  if (opts.policyFile) {
    writeFileSync(path.join(dir, "fleet.yaml"), `${head}policy: ./policy.hujson\n`);
    writeFileSync(path.join(dir, "policy.hujson"), policyHuJson(rules));
  } else writeFileSync(path.join(dir, "fleet.yaml"), `${head}${policyYaml(rules)}`);
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

/** Rule i of the generated policy: its source, and its two destinations. */
const rule = (i: number) => ({ src: i % 2 ? "group:admins" : "tag:server", dst: [`tag:t${i % 10}:${1000 + i}`, `10.${i % 250}.0.0/16:22`] });
const OWNED = [...[...Array(10).keys()].map((i) => `tag:t${i}`), "tag:server", "tag:router"];

function policyYaml(rules: number): string {
  const acls = Array.from({ length: rules }, (_, i) => `    - action: accept\n      src: [${rule(i).src}]\n      dst: [${rule(i).dst.map((d) => JSON.stringify(d)).join(", ")}]`);
  return `policy:
  groups:
    group:admins: [alice@]
  tagOwners:
${OWNED.map((t) => `    ${t}: [group:admins]`).join("\n")}
  acls:
    - action: accept
      src: [group:admins]
      dst: ["*:*"]
${acls.join("\n")}
`;
}

/** The same policy as headscale's policy file: HuJSON, a comment and trailing commas as people write it. */
function policyHuJson(rules: number): string {
  const acl = (src: string, dst: string[]) => `    { "action": "accept", "src": [${JSON.stringify(src)}], "dst": [${dst.map((d) => JSON.stringify(d)).join(", ")}] },`;
  return `// generated: ${rules} rules
{
  "groups": { "group:admins": ["alice@"] },
  "tagOwners": {
${OWNED.map((t) => `    ${JSON.stringify(t)}: ["group:admins"],`).join("\n")}
  },
  "acls": [
${[acl("group:admins", ["*:*"]), ...Array.from({ length: rules }, (_, i) => acl(rule(i).src, rule(i).dst))].join("\n")}
  ],
}
`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [dir, hosts = "1000", rules = "100"] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
  if (!dir) throw new Error("usage: node --import tsx bench/eval-scale/generate.ts DIR [hosts] [rules] [--policy-file]");
  mkdirSync(dir, { recursive: true });
  generateFleet(dir, Number(hosts), Number(rules), { policyFile: process.argv.includes("--policy-file") });
  console.log(`${dir}: ${hosts} hosts, a policy of ${Number(rules) + 1} rules${process.argv.includes("--policy-file") ? " in policy.hujson" : " in fleet.yaml"}`);
}
