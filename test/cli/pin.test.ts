/**
 * `meshfleet pin`'s parts that need no sshd: picking the key out of
 * ssh-keyscan's output, the fingerprint (real ssh-keygen), and writing
 * ssh.hostKey into a host file with its comments kept. Against a real sshd it
 * runs in `lab check` (the key it records is the one the lab saw at boot).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fingerprint, knownHostsName, pickKey, setHostKeyInYaml } from "../../cli/commands/pin.ts";

const dir = mkdtempSync(join(tmpdir(), "mf-pin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function newKey(type: "ed25519" | "ecdsa"): string {
  const f = join(dir, `k-${type}-${Math.random().toString(36).slice(2)}`);
  execFileSync("ssh-keygen", ["-q", "-t", type, "-N", "", "-f", f]);
  return readFileSync(`${f}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
}

describe("meshfleet pin", () => {
  const ed = newKey("ed25519");
  const ec = newKey("ecdsa");

  it("prefers the ed25519 key of ssh-keyscan's answer and ignores its comments", () => {
    const scan = `# 10.0.0.1:22 SSH-2.0-OpenSSH_9.2\n10.0.0.1 ${ec}\n# 10.0.0.1:22 SSH-2.0-OpenSSH_9.2\n10.0.0.1 ${ed}\n`;
    expect(pickKey(scan)?.line).toBe(ed);
    expect(pickKey(`[10.0.0.1]:2222 ${ec}\n`)?.type).toBe("ecdsa-sha2-nistp256");
    expect(pickKey("# only comments\n")).toBeUndefined();
  });

  it("shows the fingerprint ssh-keygen -l shows", () => {
    const fp = fingerprint(ed);
    expect(fp).toMatch(/^256 SHA256:[A-Za-z0-9+/]{43} \(ED25519\)$/);
    expect(fingerprint(ec)).not.toBe(fp);
  });

  it("writes ssh.hostKey into the host's YAML, keeping comments and other keys", () => {
    const text = "# The VPS\nimports: [coordinator] # profiles\naddress: 10.0.0.1\nssh:\n  # a non-standard port\n  port: 2222\n";
    const { text: out, previous } = setHostKeyInYaml(text, ed);
    expect(previous).toBe("");
    expect(out).toBe(`# The VPS\nimports: [coordinator] # profiles\naddress: 10.0.0.1\nssh:\n  # a non-standard port\n  port: 2222\n  hostKey: ${ed}\n`);
    const again = setHostKeyInYaml(out, ec);
    expect(again.previous).toBe(ed);
    expect(again.text).toContain(`hostKey: ${ec}`);
    expect(setHostKeyInYaml("address: 10.0.0.2\n", ed).text).toBe(`address: 10.0.0.2\nssh:\n  hostKey: ${ed}\n`);
  });

  it("names a host as known_hosts does off port 22", () => {
    expect(knownHostsName("10.0.0.1", 22)).toBe("10.0.0.1");
    expect(knownHostsName("10.0.0.1", 2222)).toBe("[10.0.0.1]:2222");
  });
});
