/**
 * Pings from one lab host to an address, every 0.5 s, with the time of every
 * reply, so a drill can say which pings were lost in which phase (while the
 * coordinator was down, while it came back, after) instead of one total.
 *
 * `ping -c N` and not `-w`: with a deadline, iputils' ping stops at the first
 * error it receives (an ICMP unreachable, or a send that fails because the
 * route is briefly gone), so a one-second blip would end the count early and
 * hide everything after it.
 */
import { sshExec } from "../hosts/index.ts";

export const PING_INTERVAL_MS = 500;

export interface PingLog {
  /** Packets sent, from ping's summary (0 when it printed none). */
  sent: number;
  /** icmp_seq → when that ping was sent (epoch ms), for each ping that got a reply. */
  replies: Map<number, number>;
  /** ping's output, for messages. */
  text: string;
}

/**
 * Parse `ping -n -D -O` output: each ping that got a reply, with the time it
 * was sent (the reply's stamp less its round trip: a late reply after a blip
 * must not move the pings around it later), and the summary's count. A
 * duplicate reply (DUP!) is not a second answer.
 */
export function parsePingLog(text: string): PingLog {
  const replies = new Map<number, number>();
  for (const m of text.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from \S+: icmp_seq=(\d+) .*?time=([\d.]+) ms(.*)$/gm)) {
    const seq = Number(m[2]);
    if (replies.has(seq) || m[4]!.includes("DUP!")) continue;
    replies.set(seq, Math.round(Number(m[1]) * 1000 - Number(m[3])));
  }
  const sent = Number(/(\d+) packets transmitted/.exec(text)?.[1] ?? 0);
  return { sent, replies, text };
}

/**
 * When each ping was sent (epoch ms), seq 1..sent: from the replies' times,
 * interpolated between the nearest replies for a ping that got none. Null
 * when no ping got a reply.
 */
export function sendTimes(log: PingLog): Map<number, number> | null {
  const got = [...log.replies.entries()].sort((a, b) => a[0] - b[0]);
  if (got.length === 0) return null;
  const out = new Map<number, number>();
  let i = 0;
  for (let seq = 1; seq <= Math.max(log.sent, got.at(-1)![0]); seq++) {
    while (i + 1 < got.length && got[i + 1]![0] <= seq) i++;
    const [s0, t0] = got[i]!;
    const next = got[i + 1];
    if (seq === s0) out.set(seq, t0);
    else if (seq < s0 || !next) out.set(seq, t0 + (seq - s0) * PING_INTERVAL_MS);
    else out.set(seq, Math.round(t0 + ((seq - s0) * (next[1] - t0)) / (next[0] - s0)));
  }
  return out;
}

/** The pings sent in [fromMs, toMs): how many, and which of them got no reply. */
export function pingsBetween(log: PingLog, fromMs: number, toMs: number): { sent: number; lost: number[] } {
  const times = sendTimes(log);
  if (!times) return { sent: 0, lost: [] };
  let sent = 0;
  const lost: number[] = [];
  for (const [seq, t] of times) {
    if (seq > log.sent || t < fromMs || t >= toMs) continue;
    sent++;
    if (!log.replies.has(seq)) lost.push(seq);
  }
  return { sent, lost };
}

/** Start pinging `address` from `host` on lab `instance`, `seconds` long; resolves with the log when ping ends. */
export function startPing(instance: number, host: string, address: string, seconds: number): Promise<PingLog> {
  const count = Math.round((seconds * 1000) / PING_INTERVAL_MS);
  // -i 0.5 needs root (the lab logs in as root); -W 2 per reply; -D stamps each line, -O names each ping with no reply.
  // The SSH login itself can take tens of seconds on a loaded machine: a ping killed by the timeout loses its summary.
  return sshExec(host, `ping -n -D -O -i ${PING_INTERVAL_MS / 1000} -W 2 -c ${count} ${address}`, { instance, timeoutMs: (seconds + 120) * 1000 }).then((r) =>
    parsePingLog(r.stdout + r.stderr),
  );
}

/**
 * Wait (at most `timeoutMs`) until `host` routes `address` through tailscale0:
 * headscale saying every node is online comes a moment before the laptop has
 * the map with the route again. Returns the ms waited; throws naming the last route.
 */
export async function waitTailnetRoute(instance: number, host: string, address: string, timeoutMs = 15_000): Promise<number> {
  const t0 = Date.now();
  let last = "";
  for (;;) {
    const r = await sshExec(host, `ip route get ${address}`, { instance, timeoutMs: 10_000 });
    last = (r.stdout || r.stderr).trim();
    if (r.code === 0 && /\bdev tailscale0\b/.test(r.stdout)) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${host} does not route ${address} through tailscale0 after ${timeoutMs / 1000}s: ${last}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}
