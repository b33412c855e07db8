/**
 * Lab boot time: the whole lab (five nspawn hosts booted in parallel, plus
 * the router namespaces) against one host alone, measured in the same run on
 * the same machine, so the ratio says what parallel booting costs here.
 * Run as root: node --import tsx bench/lab-boot/boot.ts [rounds]
 * Uses lab instance 6 (see lab/hosts/README.md for who uses which).
 */
import { lab, readMarker, rootfsDir, rootfsSize } from "../../lab/hosts/index.ts";

const L = lab(6);
const rounds = Number(process.argv[2] ?? 3);

async function once(hosts: string[]): Promise<{ totalMs: number; slowestBootMs: number }> {
  const r = await L.up({ hosts });
  await L.down();
  return { totalMs: r.totalMs, slowestBootMs: Math.max(...Object.values(r.bootMs)) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

await L.down();
await once(["vps"]); // warm the page cache so the first round is not an outlier
const one: number[] = [];
const all: number[] = [];
const allSlowest: number[] = [];
for (let i = 0; i < rounds; i++) {
  one.push((await once(["vps"])).totalMs);
  const a = await once(["vps", "derp", "lxc-tailscale", "nas", "laptop"]);
  all.push(a.totalMs);
  allSlowest.push(a.slowestBootMs);
}
const marker = readMarker();
console.log(`rootfs: ${(await rootfsSize(rootfsDir())) / 2 ** 20 | 0} MiB, debootstrap ${((marker?.debootstrapMs ?? NaN) / 1000).toFixed(1)} s`);
console.log(`one host up (netns + overlay + boot + sshd): median ${median(one)} ms  [${one.join(", ")}]`);
console.log(`five hosts up in parallel:                   median ${median(all)} ms  [${all.join(", ")}] (slowest host boot ${median(allSlowest)} ms)`);
console.log(`ratio five/one: ${(median(all) / median(one)).toFixed(2)}`);
