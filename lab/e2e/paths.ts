/**
 * Where the end-to-end lab keeps what must outlive the hosts: Pulumi's state
 * and home, the stack's key seed and passphrase, the lab's Caddy CA, check
 * results and the report. Outside the run folder on purpose: `hosts down`
 * removes that folder, and the stack's state must survive it.
 */
import { join } from "node:path";
import { labCacheDir } from "../hosts/index.ts";

export const STACK = "lab";

export function e2eDir(instance: number): string {
  return join(labCacheDir(), instance === 0 ? "pulumi" : `pulumi-lab${instance}`);
}

export const e2ePaths = (instance: number) => {
  const dir = e2eDir(instance);
  return {
    dir,
    /** pulumiEnv(workDir): state/ (file backend) and home/ (PULUMI_HOME). */
    pulumiWork: dir,
    /** The stack's config file, kept here so the repo's stacks/ stays untouched. */
    stackConfig: join(dir, `Pulumi.${STACK}.yaml`),
    passphrase: join(dir, "secrets", "passphrase"),
    keySeed: join(dir, "secrets", "key-seed"),
    caCert: join(dir, "secrets", "caddy-root.crt"),
    caKey: join(dir, "secrets", "caddy-root.key"),
    upResult: join(dir, "up.json"),
    checks: join(dir, "checks.json"),
    report: join(dir, "report.html"),
    log: join(dir, "pulumi-up.log"),
  };
};
