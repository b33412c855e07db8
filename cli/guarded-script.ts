/**
 * The head that meshfleet's guarded coordinator scripts share (the restore in
 * cli/commands/restore.ts, the upgrade in cli/headscale-upgrade.ts): one POSIX
 * sh script run as a transient unit on the coordinator, detached from the SSH
 * session, saying everything into a log that ends with `@@mf:result@@` and
 * the outcome's line.
 */
import { shq } from "../provider/quote.ts";

export interface GuardedHead {
  /** The comment lines after the shebang (without "# "). */
  about: string[];
  /** What `say` prefixes each line with ("restore", "upgrade"). */
  who: string;
  /** Shell variables, in order: [name, value] (values are quoted here). */
  vars: Array<[string, string]>;
  /** Seconds headscale has to answer after its start (at least 1), as $wait_s. */
  waitSeconds: number;
  /** The log file; everything the script says goes there. */
  log: string;
  /** Shell commands that stop and start headscale. */
  stop: string;
  start: string;
}

/**
 * Shebang, `set -u`, umask 077, hangups ignored (a dropped connection must not
 * stop it halfway), the variables, the log, and `say`, `finish CODE LINE`,
 * `stop_hs`, `start_hs` (tried twice, each failure said with the start
 * command's own words).
 */
export function guardedHead(h: GuardedHead): string[] {
  return [
    "#!/bin/sh",
    ...h.about.map((l) => `# ${l}`),
    "set -u",
    "umask 077",
    "trap '' HUP INT PIPE",
    ...h.vars.map(([k, v]) => `${k}=${shq(v)}`),
    `wait_s=${Math.max(1, Math.floor(h.waitSeconds))}`,
    `exec >>${shq(h.log)} 2>&1`,
    `say() { echo "${h.who}: $*"; }`,
    `finish() { echo "@@mf:result@@"; echo "$2"; exit "$1"; }`,
    `stop_hs() { ${h.stop}; }`,
    // A start that fails says what the start command said (systemd's reason), and is tried once more 3 s
    // later: a coordinator busy for a moment must not turn a good restore or upgrade into a put-back.
    `start_hs() {`,
    `  for try in 1 2; do`,
    `    if out=$({ ${h.start}; } 2>&1); then return 0; fi`,
    `    say "headscale did not start (try $try of 2): $(printf '%s' "$out" | tail -n 3 | tr '\\n' ' ')"`,
    `    [ "$try" = 2 ] || sleep 3`,
    `  done`,
    `  return 1`,
    `}`,
  ];
}
