/** A small valid fleet written to a temp folder, with per-test overrides. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const BASE: Record<string, string> = {
  "fleet.yaml": `coordinator:
  host: vps
  serverUrl: https://hs.example.com
users: [alice]
policy:
  tagOwners:
    tag:router: [alice@]
  acls:
    - action: accept
      src: [alice@]
      dst: ["*:*"]
`,
  "vps.yaml": `imports: [coordinator, reverse-proxy, derp-relay, client]
address: 203.0.113.10
derp:
  derpPort: 8443
  certMode: manual
tailscale:
  user: alice
`,
  "router.yaml": `imports: [subnet-router]
address: 192.168.8.205
lan: [192.168.8.0/24]
subnet-router:
  routes: [192.168.8.0/24]
tailscale:
  tags: [tag:router]
`,
  "laptop.yaml": `imports: [client]
address: 10.0.0.5
tailscale:
  user: alice
  acceptRoutes: true
`,
};

/** Write BASE with `files` replacing (string) or deleting (null) entries; returns the folder. */
export function writeFleet(files: Record<string, string | null> = {}): { dir: string; cleanup: () => void } {
  const root = mkdtempSync(path.join(os.tmpdir(), "mf-fleet-"));
  const dir = path.join(root, "fx");
  mkdirSync(dir);
  for (const [name, text] of Object.entries({ ...BASE, ...files })) if (text !== null) writeFileSync(path.join(dir, name), text);
  return { dir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}
