/**
 * The bundle contract: a golden of every home-fleet host's bundle, which the
 * real bundled agent accepts; the refusals (wrong version, unknown field,
 * paths with ".." or "//"); the schema's JSON form pinned to BUNDLE_FORMAT;
 * typed tailscale settings carrying everything the evaluation's argv said.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { BUNDLE_FORMAT, bundleJsonSchema, canonicalJson, parseBundle, sealBundle, sha256, type Bundle } from "../../contract/bundle.ts";
import { tailscaleSetFlags, tailscaleUpFlags } from "../../contract/tailscale.ts";
import { secretRefs } from "../../core/bundle.ts";
import { evaluateFleet, MeshfleetError } from "../../core/index.ts";
import { renderHost } from "../../core/render.ts";
import type { FleetSystem } from "../../core/types.ts";
import { REGISTRY } from "../../modules/index.ts";
import { standInSecrets } from "../fixtures/secrets.ts";
import { agent, buildAgent, tempRoot, writeBundle } from "../agent/helpers.ts";

/**
 * sha256 of the schema's JSON form for each format this code base has
 * shipped. A released format's line never changes: a schema change bumps
 * BUNDLE_FORMAT (contract/bundle.ts) and adds a line here.
 */
const SCHEMA_SHA: Record<number, string> = {
  2: "472c774eb1f7f845cdec20bbf47e3376907780714272848ec138d1f9cb77227d",
  // Format 3 is not released yet (introduced and extended with daddr in one session): its line moved once.
  3: "ead9ba16a8f185f37fb90459a1c1233f8ad40d67dd14f02a620091c942605f25",
};

const fleets: Record<string, FleetSystem> = {};
beforeAll(async () => {
  for (const stack of ["home", "lab"]) {
    const r = await evaluateFleet(REGISTRY, `hosts/${stack}`, stack);
    if (!r.fleet) throw new Error(`hosts/${stack} does not evaluate`);
    fleets[stack] = r.fleet;
  }
});

const bundlesOf = (stack: string): Bundle[] =>
  Object.values(fleets[stack].hosts)
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((h) => renderHost(h, standInSecrets(secretRefs(h))));

const unseal = (b: Bundle): Omit<Bundle, "hash"> => {
  const { hash: _h, ...rest } = b;
  return rest;
};

describe("home fleet bundles", () => {
  it("golden of every host's bundle (secrets are fixed stand-ins)", async () => {
    const bundles = bundlesOf("home");
    expect(bundles.map((b) => b.host)).toEqual(["exit", "laptop", "lxc-tailscale", "phone", "vps"]);
    for (const b of bundles) await expect(JSON.stringify(b, null, 2) + "\n").toMatchFileSnapshot(`__goldens__/home/${b.host}.bundle.json`);
  });

  it("each passes the contract check", () => {
    for (const stack of ["home", "lab"]) for (const b of bundlesOf(stack)) expect(parseBundle(JSON.parse(JSON.stringify(b))), `${stack}/${b.host}`).toEqual({ ok: true, bundle: b });
  });

  it("the real bundled agent accepts each of them (diff against an empty host)", () => {
    buildAgent();
    for (const b of bundlesOf("home")) {
      const root = tempRoot();
      const r = agent(root, ["diff", writeBundle(root, b)]);
      expect(r.stderr, b.host).toBe("");
      expect(r.code, b.host).toBe(0);
      expect(r.stdout, b.host).toMatch(/a switch from generation 0 would change:/);
      for (const f of b.files) expect(r.stdout, `${b.host} ${f.path}`).toContain(f.path);
      if (b.firewall) expect(r.stdout).toContain("nftables: replace table inet meshfleet (table inet meshfleet is missing)");
    }
  }, 60_000);

  it("the typed tailscale settings give exactly the argv the evaluation rendered", () => {
    for (const stack of ["home", "lab"])
      for (const h of Object.values(fleets[stack].hosts)) {
        const t = renderHost(h, standInSecrets(secretRefs(h))).tailscale;
        if (!h.tailscale.enable) {
          expect(t).toBeNull();
          continue;
        }
        expect(tailscaleUpFlags(t!), `${stack}/${h.name}`).toEqual(h.tailscale.upArgs);
        expect(tailscaleSetFlags(t!), `${stack}/${h.name}`).toEqual(h.tailscale.setArgs);
      }
  });

  it("a host whose modules produce what the agent would refuse fails at render, naming the host file", () => {
    const vps = structuredClone(fleets.home.hosts.vps);
    vps.files.push({ path: "/etc/headscale/../shadow", content: "x", mode: "0644", owner: "root", group: "root" });
    vps.units[0] = { ...vps.units[0], name: "not a unit" };
    let err: unknown;
    try {
      renderHost(vps, standInSecrets(secretRefs(vps)));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MeshfleetError);
    // Bundles list files by path and units by name (code-point order).
    const byKey = <T>(xs: T[], k: (x: T) => string) => [...xs].sort((a, b) => (k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0));
    const fi = byKey(vps.files, (f) => f.path).findIndex((f) => f.path.includes(".."));
    const ui = byKey(vps.units, (u) => u.name).findIndex((u) => u.name === "not a unit");
    expect((err as MeshfleetError).diagnostics.map((d) => `${d.file}: ${d.found}`)).toEqual([
      `${vps.file}: files[${fi}].path: expected an absolute path without "..", "." or empty ("//") segments, found "/etc/headscale/../shadow"`,
      `${vps.file}: units[${ui}].name: expected a systemd unit name such as tailscaled.service, found "not a unit"`,
    ]);
  });

  it("a secret the host needs and was not given is an error, never an empty file", () => {
    const vps = fleets.home.hosts.vps;
    expect(() => renderHost(vps, {})).toThrow(/file \S+ needs secret "[^"]+", which was not given/);
  });
});

describe("refusals", () => {
  const base = () => bundlesOf("home").find((b) => b.host === "vps")!;
  const problems = (x: unknown) => {
    const r = parseBundle(x);
    expect(r.ok).toBe(false);
    return r.ok ? [] : r.problems;
  };

  it("a wrong version", () => {
    for (const format of [1, 2, 4, "3", undefined]) {
      const p = problems({ ...base(), format });
      expect(p).toEqual([`bundle format ${JSON.stringify(format)} is not supported (this agent reads format ${BUNDLE_FORMAT}); deploy with a matching meshfleet`]);
    }
  });

  it("an unknown field, at the top and deep inside", () => {
    expect(problems({ ...base(), nftables: "table inet meshfleet {}" })).toEqual(['bundle: unknown field "nftables" (this agent reads bundle format 3)']);
    const b = structuredClone(base()) as Bundle & { firewall: { chains: { rules: Record<string, unknown>[] }[] } };
    b.firewall.chains[0].rules[0].raw = "tcp dport 22 accept";
    expect(problems(sealBundle(unseal(b)))).toEqual(['firewall.chains[0].rules[0]: unknown field "raw" (this agent reads bundle format 3)']);
    const t = structuredClone(base()) as Bundle & { tailscale: Record<string, unknown> };
    t.tailscale.upArgs = ["--ssh"];
    expect(problems(sealBundle(unseal(t)))).toEqual(['tailscale: unknown field "upArgs" (this agent reads bundle format 3)']);
  });

  it.each([
    ["/etc/../root/.ssh/authorized_keys", "files"],
    ["/etc/headscale/..", "files"],
    ["/etc//headscale/config.yaml", "files"],
    ["/etc/headscale/", "files"],
    ["etc/headscale/config.yaml", "files"],
    ["/etc/./x", "files"],
    ["/etc/../x", "restartTriggers"],
    ["/usr//bin/tailscale", "tailscale.cli"],
  ])("a path %s (%s)", (bad, where) => {
    const b = structuredClone(base());
    if (where === "files") {
      b.files[0].path = bad;
    } else if (where === "restartTriggers") b.units[0].restartTriggers = [bad];
    else b.tailscale!.cli = bad;
    const p = problems(sealBundle(unseal(b)));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^(files\[0\]\.path|units\[0\]\.restartTriggers\[0\]|tailscale\.cli): expected /);
    expect(p[0]).toContain(`found ${JSON.stringify(bad)}`);
  });

  it("content and bundle hashes that do not match", () => {
    const b = structuredClone(base());
    b.files[0].content += "tampered";
    expect(problems(b)).toEqual([`files[0] (${b.files[0].path}): sha256 does not match its content`, "bundle hash does not match its content"]);
    const c = structuredClone(base());
    c.sysctl["kernel.x"] = "1";
    expect(problems(c)).toEqual(["bundle hash does not match its content"]);
  });

  it("a ruleset that jumps or refers to what the table does not have, and a path written twice", () => {
    const b = structuredClone(base());
    b.firewall!.chains[0].rules.push({ verdict: { jump: "nowhere" } }, { saddr: { family: "ip", set: "nosuchset" }, verdict: "accept" });
    b.files.push({ ...b.files[0] });
    expect(problems(sealBundle(unseal(b)))).toEqual([
      `files[${b.files.length - 1}]: path ${b.files[0].path} is also written by files[0]`,
      `firewall.chains[0].rules[${b.firewall!.chains[0].rules.length - 2}]: jumps to chain nowhere, which the table does not have`,
      `firewall.chains[0].rules[${b.firewall!.chains[0].rules.length - 1}]: uses set nosuchset, which the table does not have`,
    ]);
  });

  it("nft comments that could break out of their quotes", () => {
    const b = structuredClone(base());
    b.firewall!.chains[0].rules[0].comment = 'x" ; flush ruleset ; "';
    expect(problems(sealBundle(unseal(b)))[0]).toMatch(/^firewall\.chains\[0\]\.rules\[0\]\.comment: expected a comment of at most 128 characters without quotes/);
  });
});

describe("the schema's JSON form", () => {
  it("is pinned to the format number: change the schema, bump BUNDLE_FORMAT", async () => {
    const json = JSON.stringify({ format: BUNDLE_FORMAT, schema: bundleJsonSchema() }, null, 2) + "\n";
    await expect(json).toMatchFileSnapshot(`__goldens__/bundle-format-${BUNDLE_FORMAT}.schema.json`);
    const recorded = SCHEMA_SHA[BUNDLE_FORMAT];
    expect(recorded, `add a line for format ${BUNDLE_FORMAT} to SCHEMA_SHA`).toBeDefined();
    expect(sha256(canonicalJson(bundleJsonSchema())), `the schema of released format ${BUNDLE_FORMAT} changed: bump BUNDLE_FORMAT in contract/bundle.ts instead`).toBe(recorded);
  });

  it("refuses unknown fields everywhere (additionalProperties false on every object)", () => {
    const walk = (s: unknown, at: string, out: string[]) => {
      if (!s || typeof s !== "object") return;
      const o = s as Record<string, unknown>;
      if (o.type === "object" && o.properties && o.additionalProperties !== false) out.push(at);
      for (const [k, v] of Object.entries(o)) walk(v, `${at}/${k}`, out);
    };
    const open: string[] = [];
    walk(bundleJsonSchema(), "#", open);
    expect(open).toEqual([]);
  });
});
