/**
 * `meshfleet plan` states what becomes dropped on which host (issue 13
 * item 1): a NAS joining as a client drops nothing; closing it
 * (`firewall.defaultPolicy: drop`) is reported as the whole input policy,
 * with what stays open per interface and source, and a warning; a port
 * closed on one interface; opening it again; a router joining closed; a
 * client limiting SSH to some sources. Each edit is committed in a temp git
 * repository with the home fleet and planned against the commit before.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { command, type HostGeneration, type PlanWarning } from "../../cli/commands/plan.ts";
import type { NetworkDiff } from "../../core/netdiff/index.ts";

let repo: string;
let fleet: string;
const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8" }).trim();
const write = (file: string, text: string) => writeFileSync(path.join(fleet, file), text);
const edit = (file: string, f: (s: string) => string) => write(file, f(readFileSync(path.join(fleet, file), "utf8")));

async function plan(json: boolean): Promise<string> {
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const err = vi.spyOn(console, "error").mockImplementation(() => {});
  try {
    expect(await command.run(["--base", "HEAD", "--hosts-dir", fleet, "--stack", "home", ...(json ? ["--json"] : [])])).toBe(0);
    return out;
  } finally {
    spy.mockRestore();
    err.mockRestore();
  }
}

type PlanJson = NetworkDiff & { generations: HostGeneration[]; warnings: PlanWarning[] };

/** Make the edit, plan it against HEAD (JSON and Markdown), then commit it for the next one. */
async function step(change: () => void): Promise<{ json: PlanJson; md: string }> {
  change();
  const json = JSON.parse(await plan(true)) as PlanJson;
  const md = await plan(false);
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "step");
  return { json, md };
}

const NAS = "imports: [client]\ndescription: NAS with SMB and a media server\naddress: 192.168.8.70\ntailscale:\n  tags: [tag:server]\n";

beforeAll(() => {
  repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-fw-"));
  fleet = path.join(repo, "hosts", "home");
  cpSync(path.resolve("hosts/home"), fleet, { recursive: true });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "home");
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe("plan states what becomes dropped on which host", { timeout: 120_000 }, () => {
  it("a NAS joins as a client: nothing is dropped, so no firewall change and no warning", async () => {
    const r = await step(() => write("nas.yaml", NAS));
    expect(r.json.hosts.added).toEqual(["nas"]);
    expect(r.json.firewall).toEqual({ policies: [], limited: { added: [], removed: [] } });
    expect(r.json.publicPorts).toEqual({ opened: [], closed: [] });
    expect(r.json.warnings.filter((w) => w.host === "nas")).toEqual([]);
    expect(r.md).not.toMatch(/### Firewall/);
    expect(r.json.generations.find((g) => g.host === "nas")?.firewall.added).toContain("type filter hook input priority filter; policy accept;");
  });

  it("defaultPolicy: drop with SMB on eth0 and printing from the LAN: the policy change, what stays open, and a warning", async () => {
    const r = await step(() => write("nas.yaml", NAS + "firewall:\n  defaultPolicy: drop\n  interfaces:\n    eth0:\n      allowedTCPPorts: [445]\n  sources:\n    192.168.8.0/24:\n      allowedTCPPorts: [631]\n"));
    expect(r.json.firewall.policies).toEqual([
      {
        host: "nas",
        before: "accept",
        after: "drop",
        message: "nas: input policy becomes drop: everything not listed below is now dropped outside the tailnet (was: accepted); open: tcp/22, udp/41641, tcp/445 on eth0, tcp/631 from 192.168.8.0/24",
        open: [
          { host: "nas", port: "tcp/22", detail: "from anywhere (ssh)" },
          { host: "nas", port: "udp/41641", detail: "from anywhere (tailscale)" },
          { host: "nas", port: "tcp/445 on eth0", detail: "(firewall.interfaces.eth0.allowedTCPPorts)" },
          { host: "nas", port: "tcp/631 from 192.168.8.0/24", detail: "(firewall.sources.192.168.8.0/24.allowedTCPPorts)" },
        ],
        wasOpen: [],
        limited: [],
      },
    ]);
    // The ports are listed under the policy change, not as "opened": they were open before (everything was).
    expect(r.json.publicPorts).toEqual({ opened: [], closed: [] });
    expect(r.md).toContain("- ⚠️ `nas`: input policy becomes **drop**: everything not listed below is now dropped outside the tailnet (was: accepted)\n  - open: `tcp/22` from anywhere (ssh)\n");
    expect(r.md).toContain("  - open: `tcp/445 on eth0` (firewall.interfaces.eth0.allowedTCPPorts)");
    expect(r.md).toContain("**1 host(s) now dropping inbound traffic**");
    expect(r.json.warnings).toContainEqual(expect.objectContaining({ kind: "firewall-closes", host: "nas", message: expect.stringMatching(/^nas: input policy becomes drop: .*open: tcp\/22, udp\/41641, tcp\/445 on eth0/) }));
  });

  it("a port closed on one interface: reported per interface, with a warning", async () => {
    const r = await step(() => edit("nas.yaml", (s) => s.replace("allowedTCPPorts: [445]", "allowedTCPPorts: [139]")));
    expect(r.json.publicPorts.closed).toEqual([{ host: "nas", port: "tcp/445 on eth0", detail: "(firewall.interfaces.eth0.allowedTCPPorts)" }]);
    expect(r.json.publicPorts.opened).toEqual([{ host: "nas", port: "tcp/139 on eth0", detail: "(firewall.interfaces.eth0.allowedTCPPorts)" }]);
    expect(r.md).toContain("- closed `tcp/445 on eth0` on `nas`");
    expect(r.json.warnings).toContainEqual(expect.objectContaining({ kind: "reachability-lost", host: "nas" }));
  });

  it("back to the client default: the policy becomes accept, and what was open is named", async () => {
    const r = await step(() => write("nas.yaml", NAS));
    expect(r.json.firewall.policies).toEqual([expect.objectContaining({ host: "nas", before: "drop", after: "accept" })]);
    expect(r.md).toContain("- `nas`: input policy becomes **accept**: inbound traffic outside the tailnet is no longer dropped (was: drop, except `tcp/22`, `udp/41641`, `tcp/139 on eth0`, `tcp/631 from 192.168.8.0/24`)");
    expect(r.json.warnings.filter((w) => w.kind === "firewall-closes" || w.kind === "reachability-lost")).toEqual([]);
  });

  it("a subnet router joining is closed by its role's default: stated, with a warning", async () => {
    const r = await step(() => write("router2.yaml", "imports: [subnet-router]\naddress: 192.168.8.106\nlan: [192.168.40.0/24]\nsubnet-router:\n  routes: [192.168.40.0/24]\ntailscale:\n  tags: [tag:router]\n"));
    const c = r.json.firewall.policies.find((p) => p.host === "router2");
    expect(c).toMatchObject({ before: "absent", after: "drop" });
    expect(c?.message).toMatch(/^router2: input policy becomes drop: .*\(was: the host was not in the fleet, and meshfleet dropped nothing there\); open: tcp\/22, udp\/41641$/);
    expect(r.md).toContain("- ⚠️ `router2`: input policy becomes **drop**: everything not listed below is now dropped outside the tailnet (was: not in the fleet; meshfleet dropped nothing there)");
    expect(r.json.warnings).toContainEqual(expect.objectContaining({ kind: "firewall-closes", host: "router2" }));
  });

  it("SSH limited to the LAN on a client: the port now dropped from elsewhere", async () => {
    const r = await step(() => edit("laptop.yaml", (s) => s + "firewall:\n  sshFrom: [192.168.8.0/24]\n"));
    expect(r.json.firewall.limited.added).toEqual([{ host: "laptop", port: "tcp/22", detail: "only from 192.168.8.0/24 (ssh)" }]);
    expect(r.md).toContain("- ⚠️ `laptop`: `tcp/22` now dropped outside the tailnet except from 192.168.8.0/24 (ssh)");
    expect(r.json.warnings).toContainEqual({ kind: "firewall-closes", host: "laptop", message: "laptop: tcp/22 is now dropped outside the tailnet except from 192.168.8.0/24 (ssh)" });
  });
});
