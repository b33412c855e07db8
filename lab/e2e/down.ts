/**
 * `meshfleet lab down`: the hosts go (hostsDown removes what they recorded),
 * and so does the stack's state: every resource it records lived only in
 * those hosts, and command resources cannot notice they are gone, so a kept
 * state would make the next `pulumi up` a silent no-op on empty hosts. The key
 * seed, passphrase and CA are kept (same mesh keys next time). `--purge`
 * removes the lab's whole Pulumi folder, leaving the machine as it was before
 * the first `lab up` (the shared tools and rootfs caches stay).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { hostsDown } from "../hosts/index.ts";
import { acmeDir, stopAcme } from "./acme.ts";
import { unblockUdp } from "./checks.ts";
import { e2ePaths } from "./paths.ts";

/** Forget the deployed resources (state, Pulumi home, stack config with its salt); secrets stay. */
export function dropStackState(instance: number): void {
  const p = e2ePaths(instance);
  for (const d of [join(p.dir, "state"), join(p.dir, "home"), p.stackConfig, p.upResult, p.checks]) rmSync(d, { recursive: true, force: true });
}

export async function labDown(opts: { instance: number; log: (line: string) => void; purge?: boolean }): Promise<void> {
  // A check interrupted mid-way may have left its rule; the table lives in the lab's internet netns and goes with it anyway.
  await unblockUdp(opts.instance).catch(() => undefined);
  const p = e2ePaths(opts.instance);
  // pebble and its DNS server live in the internet namespace hostsDown removes: stop them first, by their recorded pids.
  for (const s of await stopAcme(acmeDir(opts.instance))) opts.log(`stopped ${s}`);
  await hostsDown({ instance: opts.instance, log: opts.log });
  if (opts.purge) {
    rmSync(p.dir, { recursive: true, force: true });
    opts.log(`removed ${p.dir} (stack state, key seed, passphrase, CA, report)`);
  } else {
    dropStackState(opts.instance);
    opts.log(`removed the stack's state; kept ${p.dir}/secrets (\`lab down --purge\` removes it too)`);
  }
}
