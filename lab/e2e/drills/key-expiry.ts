/**
 * Issue 15 item 5's drill: a node whose key expired, seen by `status` and
 * fixed by `up`. The laptop's node key is expired on headscale; the laptop
 * learns it from its map (NeedsLogin); `status` names it EXPIRED with the
 * fix; `up` makes it a new pre-auth key and the agent logs it in again with
 * the same IPs; then status lists nothing expired and the laptop reaches the
 * nas through the router again.
 */
import { collectStatus, statusLines } from "../../../cli/commands/status.ts";
import { newSession, openStackFleet } from "../../../cli/fleet-hosts.ts";
import { hsCli } from "../coordinator-runtime.ts";
import { e2ePaths, STACK } from "../paths.ts";
import { hostOn, must, nodesOf, runDrill, sleep, type DrillResult } from "./drill.ts";

const NAS = "192.168.8.10";
const HOST = "laptop";

export interface KeyExpiryDrillOptions {
  instance: number;
  /** headscale's CLI on the VPS, as a command prefix. @default hsCli() */
  hs?: string;
  /** tailscale's CLI on the laptop, as a command prefix. */
  ts: string;
  /** `meshfleet up` of the lab's stack: its success and output (the vitest file runs the whole CLI, lab check the deploy in process). */
  up: () => Promise<{ ok: boolean; out: string }>;
}

export function keyExpiryDrill(o: KeyExpiryDrillOptions): Promise<DrillResult> {
  const { instance } = o;
  const hs = o.hs ?? hsCli();
  const on = hostOn(instance);
  const state = async () => (JSON.parse(await on(HOST, `${o.ts} status --json`)) as { BackendState: string }).BackendState;
  const nodeKey = async () => (JSON.parse(await on(HOST, `${o.ts} status --json`)) as { Self: { PublicKey: string } }).Self.PublicKey;
  const waitState = async (want: string, s: number) => {
    let got = "";
    for (let i = 0; i < s / 2; i++) {
      got = await state();
      if (got === want) return got;
      await sleep(2000);
    }
    return got;
  };
  return runDrill(async (t) => {
    const laptop = (await nodesOf(instance, hs)).find((n) => n.given_name === HOST);
    must(laptop, `headscale has no node ${HOST}`);
    const ips = [...laptop.ip_addresses].sort().join(",");
    const keyBefore = await nodeKey();
    const t0 = Date.now();
    await on("vps", `${hs} nodes expire -i ${laptop.id}`);
    // The laptop learns it from its map: it must log in again.
    const s1 = await waitState("NeedsLogin", 60);
    must(s1 === "NeedsLogin", `${HOST}'s tailscale is ${s1} 60 s after its node key was expired on headscale, expected NeedsLogin`);
    t.untilNeedsLoginMs = Date.now() - t0;

    const session = newSession();
    try {
      const a = await openStackFleet({ stack: STACK, configFile: e2ePaths(instance).stackConfig });
      const { status } = await collectStatus(a, session);
      const lines = statusLines(status).join("\n");
      const seen = status.expiring?.find((e) => e.host === HOST);
      must(seen?.kind === "node key" && seen.expired && seen.fix === "`meshfleet up` makes it a new pre-auth key and logs it in again", `status does not name ${HOST}'s node key as expired with its fix: ${JSON.stringify(seen)}\n${lines}`);
      must(new RegExp(`^EXPIRED: node key of ${HOST} \\(at .*\\): \`meshfleet up\` makes it a new pre-auth key and logs it in again$`, "m").test(lines), `status's lines do not say EXPIRED for ${HOST}:\n${lines}`);

      const tu = Date.now();
      const r = await o.up();
      t.upMs = Date.now() - tu;
      must(r.ok, `up failed: ${r.out.slice(-1500)}`);
      const s2 = await waitState("Running", 60);
      must(s2 === "Running", `${HOST}'s tailscale is ${s2} 60 s after up, expected Running`);
      t.untilRunningMs = Date.now() - tu;
      const after = (await nodesOf(instance, hs)).filter((n) => n.given_name === HOST).map((n) => [...n.ip_addresses].sort().join(","));
      must(after.length === 1 && after[0] === ips, `after the new login headscale has ${HOST} as ${after.join(" | ") || "nothing"}, expected one node with ${ips}`);
      const { status: s } = await collectStatus(a, session);
      const still = s.expiring?.filter((e) => e.host === HOST && e.expired) ?? [];
      must(still.length === 0, `status still lists ${HOST} as expired after up:\n${statusLines(s).join("\n")}`);
      // Not a must: tailscaled may log in again with the same node key, and headscale then extends its expiry.
      const keyAfter = await nodeKey();
      // The router's peer sets follow tailscale status on a timer; run it now, so the ping below does not depend on
      // whether the timer ran since the new login: the laptop must still be let through to the nas.
      // It failed once in a local CI run, with no reason shown: tried once more after 3 s, and each failure says the unit's own log.
      const peersNow = () => on("lxc-tailscale", "systemctl start meshfleet-peers.service");
      const peersLog = () => on("lxc-tailscale", "journalctl -u meshfleet-peers.service -n 15 --no-pager").catch(() => "(no journal)");
      await peersNow().catch(async (e: Error) => {
        console.log(`meshfleet-peers.service failed once on lxc-tailscale (${e.message.split("\n")[0]}); its log:\n${await peersLog()}`);
        await sleep(3000);
        await peersNow().catch(async (e2: Error) => {
          throw new Error(`${e2.message}\nmeshfleet-peers.service's log:\n${await peersLog()}`);
        });
      });
      await on(HOST, `ping -n -q -c 3 -W 2 ${NAS}`);
      return `${HOST}'s node key expired on headscale: NeedsLogin after ${(t.untilNeedsLoginMs / 1000).toFixed(1)}s, status said EXPIRED; up (${(t.upMs / 1000).toFixed(1)}s) logged it in again (node key ${keyAfter === keyBefore ? "the same, its expiry extended" : "a new one"}) with the same IPs ${ips}; status lists nothing expired; ${HOST} pings the nas`;
    } finally {
      session.close();
    }
  });
}
