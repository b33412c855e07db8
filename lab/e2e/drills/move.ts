/**
 * Issue 15 item 2's drill: the coordinator moved to another host and back
 * (docs/move.md), on real headscale, tailscaled, Caddy (its certificate from
 * the lab's ACME server) and the agent, through the whole CLI.
 *
 * The lab's spare host `derp` (booted by every lab, used by no lab fleet)
 * becomes `vps2`, a second VPS prepared as a user prepares one (Caddy
 * installed, the ACME CA trusted). Then, to vps2 and back to vps:
 *   1. the coordinator's address (203.0.113.10, the serverUrl) moves to the
 *      new host, as a DNS record would be changed, and `coordinator.host`
 *      moves in the fleet (the other VPS stays a plain node);
 *   2. `meshfleet preview` states the move; `meshfleet up` does it: headscale
 *      on the new host with the old one's database and the same keys;
 *   3. every node keeps its id and IPs (no new login), routes stay approved,
 *      the nodes come back online, the laptop still reaches the home LAN
 *      through the subnet route; the old host keeps its database, headscale
 *      stopped there;
 *   4. back on vps, the database of its first stay was kept aside.
 * Pings from the laptop to the NAS run through each move (75 s from the
 * address move on) and are counted: a blip of at most 15 s (or the deploy's
 * wall time and 5 s, while derper moves with the address), the last 10 s
 * all answered.
 *
 * Afterwards the lab's fleet is `<lab>/hosts-move`: the fleet as it was with
 * vps2 (the host derp) a plain node. A step that fails after the address
 * moved puts the coordinator back on vps (address and fleet) before the
 * drill ends, and says how that went.
 */
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labTopology } from "../../topology.ts";
import { acmeDir, pushListenerCa, startAcme, trustAcmeRoot } from "../acme.ts";
import { hsCli } from "../coordinator-runtime.ts";
import { labVariant } from "../docker-variant.ts";
import { PING_INTERVAL_MS, pingsBetween, startPing, waitTailnetRoute } from "../ping.ts";
import { provideCaddy } from "../prepare.ts";
import { DrillFailure, hostOn, must, registration, runDrill, sleep, type DrillResult, type NodeRow } from "./drill.ts";
import { deployedFleetDir, setStackConfig, writeFleetCopy } from "./fleet-copy.ts";
import { labCli } from "./lab-cli.ts";

const NAS = "192.168.8.10";
const PUBLIC = "203.0.113.10";
/** vps's own public address while 203.0.113.10 is vps2's. */
const VPS_OWN = "203.0.113.12";
/** The fleet folder (`<lab>/hosts-move`) the drill deploys. */
export const MOVE_FLEET = "move";

export type Coordinator = "vps" | "vps2";
/** The lab host behind each fleet host of the drill. */
export const LAB_HOST: Record<Coordinator, string> = { vps: "vps", vps2: "derp" };

/** A coordinator's host file made a plain tailnet node (tag:server), on the same SSH address. */
export function plainNode(text: string, why: string): string {
  const address = /^address: (\S+)$/m.exec(text)?.[1];
  if (!address) throw new Error("the coordinator's host file has no `address:` line");
  return `imports: [client, ./_tools.yaml]\ndescription: ${why}\naddress: ${address}\ntailscale:\n  tags: [tag:server]\n`;
}

/**
 * The drill's fleet files from the deployed fleet's fleet.yaml and vps.yaml
 * (the coordinator on vps): `coordinator.host` set to `coordinator`, the
 * other VPS a plain node; vps2 is vps's file on the lab host derp's address.
 * Throws when a line it edits is gone.
 */
export function moveFleetFiles(fleetYaml: string, vpsYaml: string, coordinator: Coordinator): { "fleet.yaml": string; "vps.yaml": string; "vps2.yaml": string } {
  if (!/^ {2}host: vps$/m.test(fleetYaml)) throw new Error("fleet.yaml's coordinator.host is not vps: the drill starts from the coordinator on vps");
  if (!/^address: (\S+)\.10$/m.test(vpsYaml)) throw new Error("vps.yaml's address does not end in .10 (the lab's VPS)");
  const vps2 = vpsYaml.replace(/^address: (\S+)\.10$/m, "address: $1.30").replace(/^description: .*$/m, "description: A second VPS (the lab host derp)");
  return {
    "fleet.yaml": fleetYaml.replace(/^ {2}host: vps$/m, `  host: ${coordinator}`),
    "vps.yaml": coordinator === "vps" ? vpsYaml : plainNode(vpsYaml, "The lab's VPS, a plain node while the coordinator runs on vps2"),
    "vps2.yaml": coordinator === "vps2" ? vps2 : plainNode(vps2, "A second VPS, a plain node while the coordinator runs on vps"),
  };
}

/** Each node as `<id> <name> <IPs> routes=<approved>`: a node with a new id logged in again, one with other IPs lost them. */
export function byId(ns: NodeRow[]): string[] {
  return ns.map((n) => `${n.id} ${registration([n])[0]}`).sort();
}

/** The nodes of `before` that are not on the new coordinator as they were (same id, IPs, routes), with what is there under their name; null when all are. */
export function nodesKeptProblem(before: string[], after: string[], on: string): string | null {
  const name = (row: string) => row.split(" ")[1];
  const lost = before.filter((r) => !after.includes(r));
  if (lost.length === 0) return null;
  return `nodes not kept on ${on}'s headscale (same id, IPs and routes): ${lost.map((r) => `${r} -> ${after.filter((a) => name(a) === name(r)).join(", ") || "gone"}`).join(" | ")}`;
}

/**
 * The pings of one move (sent in its window; `lastSeq` the last one sent; `upMs` the wall time of the
 * deploy that made the move): what is wrong, or null.
 */
export function movePingProblem(during: { sent: number; lost: number[] }, lastSeq: number, upMs: number): string | null {
  const said = `${during.sent} pings sent, ${during.lost.length} lost${during.lost.length ? ` (seq ${during.lost.join(",")})` : ""}`;
  if (during.sent <= 20) return `${said}: too few pings from the laptop to the NAS during the move`;
  // The data plane does not need the coordinator: tunnels already up keep flowing. But the DERP server moves
  // with the address, and a path relayed through it (or a direct one found again through it, after the new
  // coordinator's first map) waits until the deploy starts derper on the new holder: up to the deploy's own
  // time, which a loaded machine stretches (seen: up to 13 of 150, and once 32 of 150: 16 s, in a CI run).
  // So the bound is 15 s, or the deploy's wall time and 5 s for the clients to dial the relay again.
  const boundMs = Math.max(15_000, upMs + 5_000);
  if (during.lost.length * PING_INTERVAL_MS > boundMs)
    return `${said}: more than ${(boundMs / 1000).toFixed(1)} s without the NAS during the move (15 s, or the deploy's ${(upMs / 1000).toFixed(1)} s and 5 s)`;
  const late = during.lost.filter((q) => q > lastSeq - 20);
  if (late.length > 0) return `${said}: pings lost in the last 10 s of the window (seq ${late.join(",")}): traffic did not come back`;
  return null;
}

/** The host the coordinator left: headscale stopped there, its database kept; no half-done move on the new one. */
export function oldCoordinatorProblem(o: { from: string; active: string; dbKept: boolean; to: string; leftovers: string }): string | null {
  if (o.active.trim() === "active") return `headscale still runs on ${o.from}, the host the coordinator left`;
  if (!o.dbKept) return `${o.from} no longer has its database (/var/lib/headscale/db.sqlite)`;
  if (/\.meshfleet-move-/.test(o.leftovers)) return `${o.to} still holds a move's copy in /var/lib/headscale: ${o.leftovers.trim().split("\n").join(" ")}`;
  return null;
}

export interface MoveFacts {
  variant: "standard" | "docker";
  /** The deployed fleet's coordinator.host. */
  coordinatorHost: string | null;
  /** Whether the lab booted the spare host derp. */
  hasDerp: boolean;
}

/** Why the move drill does not fit this lab ("not run: ..."), or null. */
export function moveNotFit(f: MoveFacts): string | null {
  if (f.variant === "docker") return "not run: the docker variant's VPS is a docker host and the spare host derp is not; the move drill runs on the standard lab (`meshfleet lab up`)";
  if (!f.hasDerp) return "not run: this lab has no spare host derp to become vps2";
  if (f.coordinatorHost !== "vps") return `not run: the deployed fleet's coordinator is ${f.coordinatorHost ?? "(none)"}, not vps (an earlier move left half done? \`meshfleet lab down\`, then \`meshfleet lab up\`, makes the lab afresh)`;
  return null;
}

/** A file of the deployed fleet, "" when it has none. */
function deployedFile(instance: number, f: string): string {
  try {
    return readFileSync(join(deployedFleetDir(instance), f), "utf8");
  } catch {
    return "";
  }
}

/** `moveNotFit` for the lab deployed on `instance` now. */
export function moveNotFitHere(instance: number): string | null {
  const fleet = deployedFile(instance, "fleet.yaml");
  return moveNotFit({
    variant: labVariant(instance) === "docker" ? "docker" : "standard",
    coordinatorHost: /^coordinator:\n(?: {2}.*\n)*? {2}host: (\S+)$/m.exec(fleet)?.[1] ?? null,
    hasDerp: labTopology(instance).hosts.some((h) => h.name === "derp"),
  });
}

export interface MoveDrillOptions {
  instance: number;
  /**
   * Runs right after each move's `up` (`to`: the fleet host the coordinator
   * moved to, `lab`: its lab host), before its checks: the drill's own test
   * injects a fault here (a node deleted, as a move that loses one would
   * leave it) to show that the drill then fails.
   */
  afterMove?: (to: Coordinator, lab: string) => Promise<void>;
}

export function moveDrill(o: MoveDrillOptions): Promise<DrillResult> {
  const { instance } = o;
  const on = hostOn(instance);
  const topo = labTopology(instance);
  const netns = (host: string) => topo.hosts.find((h) => h.name === host)?.netns ?? "";
  const hs = hsCli();
  const nodesOn = async (host: string) => (JSON.parse((await on(host, `${hs} nodes list -o json`)) || "null") ?? []) as NodeRow[];

  /**
   * What a user does with DNS, done to the address: 203.0.113.10 leaves one
   * host for the other (vps keeps 203.0.113.12 of its own meanwhile), and the
   * lab's routers forget where it was.
   */
  const moveAddress = async (to: "vps" | "derp") => {
    const from = to === "vps" ? "derp" : "vps";
    const ns = (host: string, cmd: string) => execa("ip", ["netns", "exec", netns(host), "sh", "-c", cmd]);
    await ns("vps", `sysctl -qw net.ipv4.conf.all.promote_secondaries=1 net.ipv4.conf.eth0.promote_secondaries=1; ip addr show dev eth0 | grep -q ' ${VPS_OWN}/' || ip addr add ${VPS_OWN}/24 dev eth0`);
    // The connections the old holder had from that address die with it (its own tailscaled's control
    // connection to itself, on vps); closed here at once, as a restart of the host would, instead of
    // hanging until TCP gives up. A DNS move leaves the old host its address and has no such socket.
    await ns(from, `ip addr del ${PUBLIC}/24 dev eth0; ip route replace default via 203.0.113.1 dev eth0; ss -K src ${PUBLIC} >/dev/null`);
    await ns(to, `ip addr show dev eth0 | grep -q ' ${PUBLIC}/' || ip addr add ${PUBLIC}/24 dev eth0`);
    if (to === "vps") await ns("vps", `ip addr del ${VPS_OWN}/24 dev eth0; ip route replace default via 203.0.113.1 dev eth0; ss -K src ${VPS_OWN} >/dev/null`);
    for (const h of ["internet", "homenat", "laptopnat", "vps", "derp"]) await execa("ip", ["-n", netns(h), "neigh", "flush", "all"], { reject: false });
  };

  /** Wait until every node of `names` is online on `host`'s headscale: the ms waited. */
  const allOnline = async (host: string, names: string[], timeoutMs = 120_000) => {
    const t0 = Date.now();
    let last: NodeRow[] = [];
    while (Date.now() - t0 < timeoutMs) {
      last = await nodesOn(host).catch(() => []);
      if (names.every((n) => last.some((x) => x.given_name === n && x.online))) return Date.now() - t0;
      await sleep(1000);
    }
    throw new DrillFailure(`not every node came online on ${host}'s headscale within ${timeoutMs / 1000} s: ${last.map((n) => `${n.given_name}=${n.online ? "online" : "offline"}`).join(", ")}`);
  };

  return runDrill(async (t) => {
    const notFit = moveNotFitHere(instance);
    must(!notFit, notFit!);
    const fleetYaml = deployedFile(instance, "fleet.yaml");
    const vpsYaml = deployedFile(instance, "vps.yaml");
    const files = (c: Coordinator) => moveFleetFiles(fleetYaml, vpsYaml, c);
    files("vps2");
    const work = mkdtempSync(join(tmpdir(), "mf-move-drill-"));
    const cli = labCli(instance, () => work);
    const writeFleet = async (c: Coordinator) => {
      const f = files(c);
      const dir = writeFleetCopy(instance, MOVE_FLEET, (name, text) => (name in f ? f[name as keyof typeof f] : text), { "vps2.yaml": f["vps2.yaml"] });
      setStackConfig(instance, { "meshfleet:hostsDir": dir });
    };
    /** Where 203.0.113.10 is, as the drill moved it. */
    // Set once the drill first writes a fleet with the coordinator elsewhere: from then on a failure puts
    // the address, the fleet and the coordinator back on vps (each step of that is harmless where it is already so).
    let touched = false;
    let ping: Promise<unknown> | undefined;
    const said: string[] = [];
    try {
      // vps2 prepared as a user prepares a new VPS: Caddy there, the ACME server's CA trusted.
      const tp = Date.now();
      const acme = await startAcme({ instance, dir: acmeDir(instance), log: () => {} });
      await provideCaddy("derp", instance);
      await pushListenerCa("derp", acme.listenerCa, instance);
      await trustAcmeRoot("derp", acme.root, instance);
      t.prepareVps2Ms = Date.now() - tp;

      const beforeRows = await nodesOn("vps");
      const before = byId(beforeRows);
      must(before.length >= 3, `nodes registered before the drill: ${before.length}, expected 3 or more`);
      must(/lxc-tailscale .* routes=.*192\.168\.8\.0\/24/.test(before.join("\n")), `lxc-tailscale's route 192.168.8.0/24 is not approved before the drill: ${before.join(" | ")}`);
      const names = [...new Set([...beforeRows.map((n) => n.given_name), "vps2"])];

      /** The fleet with the coordinator on `to`, and its preview, which must state the move. */
      const previewMove = async (to: Coordinator) => {
        const fromHost: Coordinator = to === "vps" ? "vps2" : "vps";
        await writeFleet(to);
        const preview = await cli("preview");
        must(preview.code === 0, `preview of the move to ${to}: exit ${preview.code}: ${preview.out.slice(-1500)}`);
        must(preview.out.includes(`the coordinator moves here from ${fromHost}`), `preview does not state the move to ${to} ("the coordinator moves here from ${fromHost}"): ${preview.out.slice(-1500)}`);
      };
      touched = true;
      await previewMove("vps2");
      for (const [to, key, next] of [["vps2", "ToVps2", "vps"], ["vps", "Back", null]] as const) {
        const fromHost: Coordinator = to === "vps" ? "vps2" : "vps";
        const lab = LAB_HOST[to];
        const fromLab = LAB_HOST[fromHost];
        const pinging = startPing(instance, "laptop", NAS, 75);
        ping = pinging;
        const t0 = Date.now();
        await moveAddress(lab as "vps" | "derp");
        const up = await cli("up");
        t[`up${key}Ms`] = up.ms;
        if (o.afterMove) await o.afterMove(to, lab);
        must(up.code === 0, `up (the move to ${to}): exit ${up.code}: ${up.out.slice(-2500)}`);
        must(up.out.includes(`database from ${fromHost} in place`), `up did not carry the database from ${fromHost} to ${to}: ${up.out.slice(-1500)}`);
        // The nodes of before, untouched (vps2 joins on the first move and stays).
        const kept = nodesKeptProblem(before, byId(await nodesOn(lab)), to);
        must(!kept, kept!);
        t[`online${key}Ms`] = await allOnline(lab, names);
        await waitTailnetRoute(instance, "laptop", NAS, 60_000);

        // The old coordinator: headscale stopped, its database kept.
        const old = oldCoordinatorProblem({
          from: fromHost,
          active: await on(fromLab, "systemctl is-active headscale.service || true"),
          dbKept: (await on(fromLab, "test -s /var/lib/headscale/db.sqlite && echo yes || true")).trim() === "yes",
          to,
          leftovers: await on(lab, "ls -a /var/lib/headscale"),
        });
        must(!old, old!);
        // The next move's preview reads only: it runs while this move's pings go on.
        if (next) await previewMove(next);

        const log = await pinging;
        const during = pingsBetween(log, t0, Date.now());
        t[`pingLoss${key}Ms`] = during.lost.length * PING_INTERVAL_MS;
        const pp = movePingProblem(during, log.sent, up.ms);
        must(!pp, `move to ${to}: ${pp}\n${log.text.slice(-800)}`);
        said.push(`to ${to}: up ${(up.ms / 1000).toFixed(1)}s, all online ${(t[`online${key}Ms`] / 1000).toFixed(1)}s later, ${during.sent - during.lost.length}/${during.sent} pings`);
      }
      // Back on vps: the database of its first stay was kept aside, not deleted.
      const aside = await on("vps", "ls /var/lib/headscale");
      must(/^before-move-\d{8}T\d{6}Z$/m.test(aside), `vps did not keep the database of its first stay aside (no before-move-<stamp> in /var/lib/headscale): ${aside.trim().split("\n").join(" ")}`);
      return `${before.length} nodes kept their ids, IPs and routes through a move to vps2 (the lab host derp) and back; ${said.join("; ")}; the old coordinator kept its database each time`;
    } catch (e) {
      // A failed step once the drill wrote a moved fleet (its preview, the address, either up, a check after):
      // the coordinator back on vps (address, fleet, up), so the lab goes on and the next deploy does not move it.
      if (!touched) throw e;
      let back: string;
      try {
        await moveAddress("vps");
        await writeFleet("vps");
        const r = await cli("up");
        back = r.code === 0 ? "the coordinator was put back on vps" : `putting the coordinator back on vps failed: up exit ${r.code}: ${r.out.slice(-600)}`;
      } catch (e2) {
        back = `putting the coordinator back on vps failed: ${(e2 as Error).message}`;
      }
      throw new DrillFailure(`${(e as Error).message}; ${back}`);
    } finally {
      await ping?.catch(() => undefined);
      rmSync(work, { recursive: true, force: true });
    }
  });
}
