/**
 * V8 tuning for the commands that evaluate a fleet and exit (check, render).
 *
 * They run each function of the pipeline a few thousand times at most, a
 * second or so in all: too short for V8's optimizing tier (TurboFan) to pay
 * for itself. Its compiler threads cost about as much CPU as the work itself
 * (1,000 hosts: ~800 ms on the compiler threads beside ~850 ms on the main
 * thread, node 20), and on a busy machine they compete for the cores. Capped
 * at the baseline tier (Sparkplug), load + evaluate + render of 1,000 hosts
 * took half the CPU, and 5,000 hosts still less (bench/eval-scale).
 *
 * Process-wide and not undone: only for commands that exit when done, never
 * for the deploy verbs (Pulumi runs in-process for minutes) or a long-lived
 * caller. MESHFLEET_FULL_JIT=1 keeps V8's default (to compare).
 */
import { setFlagsFromString } from "node:v8";

let tuned = false;

export function tuneForShortRun(): void {
  if (tuned || process.env.MESHFLEET_FULL_JIT === "1") return;
  tuned = true;
  setFlagsFromString("--max-opt=1");
}
