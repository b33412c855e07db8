/**
 * What each agent host needs before any generation is switched (issue 14
 * item 2): its OS, the agent's Node, the Debian packages its modules
 * declare, and the pinned tailscale and headscale binaries. The spec is
 * built here from the evaluated host; the Prerequisites resource
 * (provider/resources/prerequisites.ts) probes, refuses and installs.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { NODE_MINIMUM_MAJOR, PACKAGE_COMMANDS, type AptRepository, type PinnedBinary, type PrerequisiteSpec } from "../provider/prerequisites.ts";
import type { HostSystem } from "../core/types.ts";

export interface PrerequisiteContext {
  tailscaleVersion: string;
  /** The agent's node command (HostAgent `node`). */
  node?: string;
  /** The coordinator: its headscale CLI binary (systemd runtime) and whether the deploy installs it. */
  coordinator?: { headscaleVersion: string; binary?: string; deployed: boolean };
  /** The fleet's folder, which tailscale.apt.keyring is relative to (default: the host file's folder, which is it). */
  fleetDir?: string;
}

/** A keyring file that is not one apt reads, for the message. */
function keyringProblem(bytes: Buffer, armored: boolean): string | undefined {
  if (bytes.length === 0) return "an empty file";
  const text = bytes.subarray(0, 64).toString("latin1");
  if (armored) return text.startsWith("-----BEGIN PGP PUBLIC KEY BLOCK-----") ? undefined : "a file that is not an armored OpenPGP public key (no BEGIN PGP PUBLIC KEY BLOCK line)";
  // A binary keyring starts with an OpenPGP packet (the high bit set); an armored key saved as .gpg is the usual mistake.
  if (text.startsWith("-----BEGIN")) return "an armored key in a .gpg file (apt reads .gpg as binary)";
  return bytes[0]! & 0x80 ? undefined : "a file that is not a binary OpenPGP keyring";
}

/**
 * tailscale.apt as the repository the Prerequisites resource sets up: the
 * keyring read from the fleet's folder here, at deploy, before anything is
 * declared. A missing or malformed keyring stops the program with the
 * file, the option, what was expected and found, and the fix.
 */
export function tailscaleRepository(h: HostSystem, c: PrerequisiteContext): AptRepository | undefined {
  const t = h.tailscale;
  if (!t.enable || !t.aptUrl || !t.aptKeyring) return undefined;
  const dir = c.fleetDir ?? path.dirname(path.resolve(h.file));
  const armored = t.aptKeyring.endsWith(".asc");
  const shown = path.join(path.relative(process.cwd(), dir) || ".", t.aptKeyring);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path.resolve(dir, t.aptKeyring));
  } catch (e) {
    throw new Error(
      `${h.file}: tailscale.apt.keyring: expected the repository's signing key at ${shown}, found ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}. Fix: save the keyring the repository publishes (Tailscale's <codename>.noarmor.gpg) there and check its fingerprint, or set tailscale.apt.keyring to where it is`,
    );
  }
  const bad = keyringProblem(bytes, armored);
  if (bad)
    throw new Error(
      `${h.file}: tailscale.apt.keyring: expected ${armored ? "an armored OpenPGP public key (.asc)" : "a binary OpenPGP keyring (.gpg)"} at ${shown}, found ${bad}. Fix: save Tailscale's <codename>.noarmor.gpg as a .gpg file, or its armored <codename>.gpg as a .asc file, and name it in tailscale.apt.keyring`,
    );
  return {
    name: "tailscale",
    url: t.aptUrl,
    suite: t.aptSuite ?? "",
    component: t.aptComponent || "main",
    keyring: { base64: bytes.toString("base64"), armored },
    package: "tailscale",
    version: c.tailscaleVersion,
    origin: `${h.file}: tailscale.apt`,
    versionOption: "tailscaleVersion",
  };
}

export function prerequisiteSpec(h: HostSystem, c: PrerequisiteContext): PrerequisiteSpec {
  const binaries: PinnedBinary[] = [];
  const repo = tailscaleRepository(h, c);
  if (h.tailscale.enable) {
    binaries.push({
      ...(repo ? { repository: repo.name } : {}),
      what: "tailscale",
      path: h.tailscale.cli,
      versionArgs: ["version"],
      version: c.tailscaleVersion,
      option: "tailscaleVersion",
      fix: `turn on tailscale.apt so the deploy installs tailscale ${c.tailscaleVersion} from Tailscale's apt repository (docs/deploy.md, "What each host needs first"), install it yourself, or set tailscale.tailscalePath and tailscale.tailscaledPath to where it is`,
    });
  }
  if (c.coordinator?.binary) {
    binaries.push({
      what: "headscale",
      path: c.coordinator.binary,
      versionArgs: ["version"],
      version: c.coordinator.headscaleVersion,
      option: "coordinator.headscaleVersion",
      fix: `install headscale ${c.coordinator.headscaleVersion} (its release .deb), or set meshfleet:headscaleBinaryPath so the deploy installs it`,
      deployed: c.coordinator.deployed,
    });
  }
  // The docker runtime's containers run under Debian's docker.io and its compose program (bookworm: docker-compose 1.29).
  const packages = [...new Set([...h.packages, ...(h.containers.length ? ["docker.io", "docker-compose"] : [])])].sort();
  return {
    host: h.name,
    packages: packages.map((name) => (PACKAGE_COMMANDS[name] ? { name, command: PACKAGE_COMMANDS[name] } : { name })),
    node: { path: c.node ?? "node", minimumMajor: NODE_MINIMUM_MAJOR },
    binaries,
    ...(repo ? { repositories: [repo] } : {}),
  };
}
