/**
 * A hand-built ModuleContext (the evaluator's job in production): fleet.yaml
 * parsed with its schema, each host's module options parsed with the
 * module's own schema, so defaults are the real ones.
 */
import { hostSchema } from "../../../core/eval.ts";
import { fleetSchema } from "../../../core/fleet-schema.ts";
import type { HostConfig, HostFacts, ModuleContext, ModuleOptions, PeerView } from "../../../core/module.ts";
import type { Runtime } from "../../../core/types.ts";
import { REGISTRY } from "../../../modules/index.ts";

export interface HostInput {
  address: string;
  runtime?: Runtime;
  options?: { [K in keyof ModuleOptions]?: Record<string, unknown> };
}

const schema = hostSchema(REGISTRY);

/** A host's config as the evaluator makes it (the real schema and defaults), with its modules' facts. */
export function peerOf(name: string, h: HostInput): PeerView {
  const config = schema.parse({ address: h.address, runtime: h.runtime ?? "systemd", ...(h.options ?? {}) }) as unknown as HostConfig;
  const file = `hosts/lab/${name}.yaml`;
  const facts: HostFacts = { services: {}, tailnet: null };
  for (const m of REGISTRY.modules) {
    const f = m.facts?.((config as Record<string, any>)[m.name], { name, file, config });
    if (f?.services) Object.assign(facts.services, f.services);
    if (f?.tailnet !== undefined) facts.tailnet = f.tailnet;
  }
  return { name, file, address: h.address, roles: [], runtime: config.runtime, lan: config.lan, config, facts };
}

export const SIMPLE_POLICY = `// test policy
{
  "groups": { "group:admins": ["alice@"] },
  "tagOwners": { "tag:router": ["group:admins"] },
  "acls": [
    { "action": "accept", "src": ["group:admins"], "dst": ["*:*"] },
    { "action": "accept", "src": ["tag:router"], "dst": ["tag:router:*"] },
  ],
}
`;

export function makeCtx(
  self: string,
  hosts: Record<string, HostInput>,
  fleet: Record<string, unknown> = {},
  policyHuJson = SIMPLE_POLICY,
): ModuleContext {
  const f = fleetSchema.parse({
    coordinator: { host: "vps", serverUrl: "https://headscale.example.com" },
    users: ["alice"],
    ...fleet,
  });
  const views: Record<string, PeerView> = {};
  for (const [name, h] of Object.entries(hosts)) views[name] = peerOf(name, h);
  return {
    host: self,
    file: `hosts/lab/${self}.yaml`,
    self: views[self],
    hosts: views,
    fleet: f,
    fleetFile: "hosts/lab/fleet.yaml",
    stack: "lab",
    policyHuJson,
    autoApprovers: { routes: {}, exitNode: [] },
  };
}

/** Seed 004's coordinator: one VPS with Headscale, a proxy and derper. */
export function seed004(
  proxy: Record<string, unknown> = { kind: "nginx" },
  derp: Record<string, unknown> = { enable: true, hostname: "derp.example.com", ipv4: "203.0.113.20", derpPort: 443 },
  runtime: Runtime = "systemd",
): ModuleContext {
  return makeCtx(
    "vps",
    {
      vps: { address: "203.0.113.10", runtime, options: { headscale: { enable: true }, "reverse-proxy": { enable: true, ...proxy } } },
      relay: { address: "203.0.113.20", options: { derp } },
      router: { address: "192.168.8.105" },
    },
    { dns: { baseDomain: "tailnet.example.net", nameservers: { global: ["1.1.1.1"], split: { "home.arpa": ["192.168.8.1"] } } } },
  );
}
