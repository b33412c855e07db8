/**
 * The deploy installs tailscale from a vendor apt repository (tailscale.apt,
 * issue 14 item 2), against the real lab (MESHFLEET_LAB_E2E=1, root, tools
 * built; in CI a missing prerequisite fails, never skips). Lab instance 5; a
 * lab already deployed there is reused, else `lab up` deploys it and `lab
 * down` removes it afterwards.
 *
 * The repository is a real one, made by the test on the laptop: a `tailscale`
 * .deb built with dpkg-deb from the binaries `meshfleet tools build` made (and
 * a second one, labelled 1.98.9, holding the same 1.98.10 binaries), Packages
 * and Release files in the dists/ layout, Release signed inline (InRelease)
 * with a gpg key the test makes here. The fleet points tailscale.apt at it
 * (a file: URL) with that key's public keyring in the fleet's folder.
 *
 * Proved here, each by `meshfleet up` on the laptop with tailscale.apt on
 * and the package paths:
 *   - Release signed by another key: apt refuses the lists, the deploy
 *     reports it naming tailscale.apt and the keyring; nothing is installed
 *     and no host's generation changes;
 *   - tailscaleVersion 1.98.8, which the repository lacks: refused, naming
 *     what it offers; nothing installed;
 *   - tailscaleVersion 1.98.9: apt installs that package, whose binary says
 *     1.98.10: the check after the install refuses it;
 *   - tailscaleVersion 1.98.10: installed from the repository (an upgrade
 *     from the 1.98.9 package), pinned in apt preferences, the version check
 *     passes, tailscaled runs from /usr/sbin and the laptop is online again;
 *   - tailscale.apt off again: the pin, source and keyring meshfleet wrote
 *     are removed, the package stays.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDeploy } from "../../cli/commands/deploy.ts";
import { collectStatus } from "../../cli/commands/status.ts";
import { newSession, openStackFleet } from "../../cli/fleet-hosts.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv } from "../../lab/e2e/pulumi.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { labMissing, labOn, writeLabFleet } from "../lab/harness.ts";

const INSTANCE = 5;
const p = e2ePaths(INSTANCE);
const on = labOn(INSTANCE);
const REPO_DIR = "/srv/meshfleet-lab-tailscale-apt";
const TOOLS = "/opt/meshfleet/tools/tailscale@1.98.10/bin";
const KEYRING = "keys/lab-tailscale-archive-keyring.gpg";

/** The lab fleet with the laptop installing tailscale from the test's repository, at `version`. */
function writeAptFleet(keyring: Buffer, version?: string): void {
  const dir = writeLabFleet(INSTANCE, {
    edit: (f, text) => {
      if (f === "fleet.yaml" && version) return `${text}tailscaleVersion: ${version}\n`;
      if (f !== "laptop.yaml") return text;
      // Without the lab's _tools.yaml: the package's paths (the defaults), the rest of what it sets kept.
      return text
        .replace("imports: [client, ./_tools.yaml]", "imports: [client]")
        .replace(
          "  acceptRoutes: true\n",
          `  acceptRoutes: true\n  environment:\n    TS_DEBUG_FIREWALL_MODE: nftables\n  apt:\n    enable: true\n    url: file:${REPO_DIR}\n    keyring: ${KEYRING}\n`,
        );
    },
  });
  mkdirSync(join(dir, "keys"), { recursive: true });
  writeFileSync(join(dir, KEYRING), keyring);
}

describe.skipIf(skipUnlessCi(labMissing()))(`tailscale from a vendor apt repository, on lab instance ${INSTANCE}`, () => {
  let broughtUp = false;
  let gnupg = "";
  const gpg = (args: string[], input?: string | Buffer) => execFileSync("gpg", ["--homedir", gnupg, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", ...args], { input, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });

  beforeAll(async () => {
    gnupg = mkdtempSync(join(tmpdir(), "mf-ts-apt-gpg-"));
    writeLabFleet(INSTANCE);
    let deployed = false;
    try {
      const s = newSession();
      const { status } = await collectStatus(await openStackFleet({ stack: STACK, configFile: p.stackConfig }), s);
      s.close();
      deployed = status.hosts.every((h) => h.reachable && (h.generation?.n ?? 0) > 0);
    } catch {
      deployed = false;
    }
    if (!deployed) {
      const r = await labUp({ instance: INSTANCE, log: () => {}, noBuild: true });
      if (!r.ok) throw new Error(`lab up --instance ${INSTANCE}: ${r.error}`);
      broughtUp = true;
    }
  }, 900_000);

  afterAll(async () => {
    if (gnupg) rmSync(gnupg, { recursive: true, force: true });
    if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
  });

  /** A signing key of the test's own; returns its fingerprint. */
  function makeKey(uid: string): string {
    gpg(["--quick-generate-key", uid, "ed25519", "sign", "never"]);
    const out = gpg(["--with-colons", "--list-keys", uid]).toString();
    return /^fpr:+([0-9A-F]{40}):/m.exec(out)![1]!;
  }

  it("installs the pinned tailscale from the repository, and refuses a bad signature, a version it lacks and a binary at another release", async () => {
    const good = makeKey("meshfleet lab repository");
    const other = makeKey("meshfleet lab stranger");
    const keyring = gpg(["--export", good]);
    const env = labPulumiEnv(INSTANCE);
    const up = () => runDeploy({ verb: "up", stack: STACK, configFile: p.stackConfig, env });
    const gen = async (h: string) => (JSON.parse(await on(h, "node /usr/local/lib/meshfleet/meshfleet-agent.mjs status --json")) as { generation: number; hash: string }).generation;
    const installed = async () => (await on("laptop", "dpkg-query -W -f='${Status} ${Version}' tailscale 2>/dev/null || true")).trim();

    // The repository on the laptop: two debs from the built binaries, the second labelled 1.98.9.
    await on("laptop", "dpkg -r tailscale >/dev/null 2>&1; rm -f /etc/apt/sources.list.d/tailscale.list /etc/apt/preferences.d/tailscale /usr/share/keyrings/tailscale-archive-keyring.*; true");
    const stanzas: string[] = [];
    for (const v of ["1.98.10", "1.98.9"]) {
      const deb = `pool/tailscale_${v}_amd64.deb`;
      const out = await on(
        "laptop",
        [
          "set -e",
          `b=$(mktemp -d); mkdir -p $b/DEBIAN $b/usr/bin $b/usr/sbin ${REPO_DIR}/pool`,
          `cp ${TOOLS}/tailscale $b/usr/bin/tailscale; cp ${TOOLS}/tailscaled $b/usr/sbin/tailscaled`,
          `printf 'Package: tailscale\\nVersion: ${v}\\nArchitecture: amd64\\nMaintainer: meshfleet lab <lab@example.invalid>\\nDescription: tailscale built by meshfleet tools build (lab)\\n' > $b/DEBIAN/control`,
          `dpkg-deb -Znone --root-owner-group -b $b ${REPO_DIR}/${deb} >/dev/null; rm -rf $b`,
          `printf '%s %s\\n' $(stat -c %s ${REPO_DIR}/${deb}) $(sha256sum ${REPO_DIR}/${deb} | cut -d' ' -f1)`,
        ].join("\n"),
        { timeoutMs: 120_000 },
      );
      const [size, sha] = out.trim().split(" ");
      stanzas.push(`Package: tailscale\nVersion: ${v}\nArchitecture: amd64\nMaintainer: meshfleet lab <lab@example.invalid>\nFilename: ${deb}\nSize: ${size}\nSHA256: ${sha}\nDescription: tailscale built by meshfleet tools build (lab)\n`);
    }
    const packages = stanzas.join("\n");
    const sha256 = execFileSync("sha256sum", { input: packages }).toString().split(" ")[0];
    const release = [
      "Origin: meshfleet-lab",
      "Label: meshfleet-lab",
      "Suite: bookworm",
      "Codename: bookworm",
      `Date: ${new Date().toUTCString()}`,
      "Architectures: amd64",
      "Components: main",
      "SHA256:",
      ` ${sha256} ${Buffer.byteLength(packages)} main/binary-amd64/Packages`,
      "",
    ].join("\n");
    const publish = async (signer: string) => {
      const inRelease = gpg(["--local-user", signer, "--clearsign", "--output", "-"], release);
      await on("laptop", `mkdir -p ${REPO_DIR}/dists/bookworm/main/binary-amd64 && cat > ${REPO_DIR}/dists/bookworm/main/binary-amd64/Packages`, { input: packages });
      await on("laptop", `base64 -d > ${REPO_DIR}/dists/bookworm/InRelease`, { input: inRelease.toString("base64") });
      // apt's sandbox user reads file: sources.
      await on("laptop", `chmod -R a+rX ${REPO_DIR}`);
    };

    const before = { vps: await gen("vps"), laptop: await gen("laptop") };
    let passed = false;
    let restored = false;
    try {
      // 1. Signed by a key the fleet does not name: apt refuses the lists.
      await publish(other);
      writeAptFleet(keyring);
      const badSig = await up();
      expect(badSig.ok).toBe(false);
      const badSigText = badSig.errors.join("\n");
      expect(badSigText).toMatch(/host laptop: .*laptop\.yaml: tailscale\.apt: apt could not read the repository file:\/srv\/meshfleet-lab-tailscale-apt bookworm main: expected its lists signed by the key in tailscale\.apt\.keyring/);
      expect(badSigText).toMatch(/NO_PUBKEY|not signed|signatures couldn't be verified/);
      expect(badSigText).toMatch(/Fix: if apt says NO_PUBKEY or BADSIG, the keyring is not the repository's signing key/);
      expect(await installed()).not.toMatch(/install ok installed/);
      expect({ vps: await gen("vps"), laptop: await gen("laptop") }).toEqual(before);
      // A source apt cannot read is taken out again: it would break the host's every later apt-get update.
      expect((await on("laptop", "ls /etc/apt/preferences.d/tailscale /etc/apt/sources.list.d/tailscale.list /usr/share/keyrings/tailscale-archive-keyring.gpg 2>/dev/null | wc -l")).trim()).toBe("0");

      // 2. Signed right; the fleet pins a version the repository does not have.
      await publish(good);
      writeAptFleet(keyring, "1.98.8");
      const missing = await up();
      expect(missing.ok).toBe(false);
      expect(missing.errors.join("\n")).toMatch(/host laptop: .*tailscale\.apt: expected file:\/srv\/meshfleet-lab-tailscale-apt bookworm main to offer tailscale 1\.98\.8 \(tailscaleVersion\), found only 1\.98\.10, 1\.98\.9\. Fix: set tailscaleVersion in fleet\.yaml to a version the repository offers/);
      expect(await installed()).not.toMatch(/install ok installed/);
      expect({ vps: await gen("vps"), laptop: await gen("laptop") }).toEqual(before);
      // What the deploy wrote (a source apt reads stays): the keyring, the source naming it, the pin.
      expect((await on("laptop", "cat /etc/apt/sources.list.d/tailscale.list")).trim().split("\n").pop()).toBe(
        `deb [signed-by=/usr/share/keyrings/tailscale-archive-keyring.gpg] file:${REPO_DIR} bookworm main`,
      );
      expect(Buffer.from((await on("laptop", "base64 -w0 /usr/share/keyrings/tailscale-archive-keyring.gpg")).trim(), "base64").equals(keyring)).toBe(true);

      // 3. The 1.98.9 package holds 1.98.10 binaries: installed, then refused by the version check.
      writeAptFleet(keyring, "1.98.9");
      const wrongBuild = await up();
      expect(wrongBuild.ok).toBe(false);
      expect(wrongBuild.errors.join("\n")).toMatch(/host laptop: .*tailscale\.apt: installed tailscale=1\.98\.9, expected \/usr\/bin\/tailscale to report 1\.98\.9 \(tailscaleVersion\), found 1\.98\.10\./);
      expect(await installed()).toBe("install ok installed 1.98.9");
      expect({ vps: await gen("vps"), laptop: await gen("laptop") }).toEqual(before);

      // 4. The fleet's version: installed (up from 1.98.9), pinned, checked; the laptop switches to the package's tailscaled.
      writeAptFleet(keyring);
      const ok = await up();
      expect(ok.ok, ok.errors.join("; ")).toBe(true);
      expect(ok.resources.filter((x) => x.host === "laptop" && x.type === "meshfleet:host:Prerequisites").map((x) => x.op)).toEqual(["update"]);
      expect(await installed()).toBe("install ok installed 1.98.10");
      expect(await on("laptop", "cat /etc/apt/preferences.d/tailscale")).toMatch(/^Package: tailscale\nPin: version 1\.98\.10\nPin-Priority: 1001$/m);
      // The pin holds: apt's candidate is the fleet's version, not the newest one offered.
      expect(await on("laptop", "apt-cache policy tailscale")).toMatch(/Candidate: 1\.98\.10/);
      expect(await on("laptop", "/usr/bin/tailscale version")).toMatch(/^1\.98\.10\n/);
      expect(await on("laptop", "systemctl show -p ExecStart tailscaled")).toContain("path=/usr/sbin/tailscaled");
      let online = false;
      for (let i = 0; i < 30 && !online; i++) {
        const st = JSON.parse(await on("laptop", "/usr/bin/tailscale status --json")) as { BackendState: string; Self?: { Online?: boolean } };
        online = st.BackendState === "Running";
        if (!online) await new Promise((r) => setTimeout(r, 1000));
      }
      expect(online).toBe(true);
      // The next up has nothing to install.
      const again = await runDeploy({ verb: "preview", stack: STACK, configFile: p.stackConfig, env });
      expect(again.ok, again.errors.join("; ")).toBe(true);
      expect(again.resources.filter((x) => x.host === "laptop" && x.type === "meshfleet:host:Prerequisites").map((x) => x.op)).toEqual(["same"]);

      // 5. tailscale.apt off again (hosts/lab as it is): the pin, source and keyring go, the package stays, tailscaled is the lab's again.
      writeLabFleet(INSTANCE);
      const back = await up();
      expect(back.ok, back.errors.join("; ")).toBe(true);
      restored = true;
      expect((await on("laptop", "ls /etc/apt/preferences.d/tailscale /etc/apt/sources.list.d/tailscale.list /usr/share/keyrings/tailscale-archive-keyring.gpg 2>/dev/null | wc -l")).trim()).toBe("0");
      expect(await installed()).toBe("install ok installed 1.98.10");
      expect(await on("laptop", "systemctl show -p ExecStart tailscaled")).toContain(`path=${TOOLS}/tailscaled`);
      passed = true;
    } finally {
      const left: string[] = [];
      const step = async (what: string, f: () => Promise<unknown>) => {
        try {
          await f();
        } catch (e) {
          left.push(`${what}: ${(e as Error).message}`);
        }
      };
      if (!restored) await step("hosts/lab deployed back", async () => {
        writeLabFleet(INSTANCE);
        const back = await up();
        if (!back.ok) throw new Error(back.errors.join("; "));
      });
      await step("the package and its repository removed", () =>
        on("laptop", `dpkg -r tailscale >/dev/null 2>&1; rm -rf ${REPO_DIR} /etc/apt/sources.list.d/tailscale.list /etc/apt/preferences.d/tailscale /usr/share/keyrings/tailscale-archive-keyring.*; true`),
      );
      const msg = `tailscale-apt-lab: putting the lab back failed:\n${left.join("\n")}`;
      if (left.length && passed) throw new Error(msg);
      if (left.length) console.error(msg);
    }
  }, 900_000);
});
