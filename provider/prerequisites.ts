/**
 * What a host must have before its generation can run (issue 14 item 2):
 * a Debian-family system, the agent's runtime (Node >= 18), the Debian
 * packages its modules declare, and the tailscale and headscale binaries
 * the fleet pins. One read-only probe over SSH says what is there; the
 * Prerequisites resource refuses what it cannot install (another OS, a Node
 * too old, a binary meshfleet does not install) and installs the missing
 * packages with apt-get. Plain functions: the shell text, the parse and the
 * decisions, tested without a host.
 */
import { shq } from "./quote.ts";

/** A Debian package a module needs, and the command that shows it is there. */
export interface NeededPackage {
  name: string;
  /** A command on PATH that the package provides; present counts as installed (a binary put there by hand or by the lab). */
  command?: string;
}

/** A binary the fleet pins that meshfleet does not install from a package. */
export interface PinnedBinary {
  /** What it is, in messages: "tailscaled", "headscale". */
  what: string;
  path: string;
  /** argv after the path that prints the version. */
  versionArgs: string[];
  /** The release the fleet pins (coordinator.headscaleVersion, tailscaleVersion). */
  version: string;
  /** The option that pins it, named in messages. */
  option: string;
  /** How to get it when it is missing. */
  fix: string;
  /** Missing is fine: the deploy puts it there itself (the headscale binary pushed from meshfleet:headscaleBinaryPath). */
  deployed?: boolean;
}

export interface PrerequisiteSpec {
  host: string;
  packages: NeededPackage[];
  /** The agent's runtime: the command the agent runs with (a name looked up on PATH, or a path). */
  node: { path: string; minimumMajor: number };
  binaries: PinnedBinary[];
}

/** Commands that show a package is there, for the packages meshfleet's modules declare. */
export const PACKAGE_COMMANDS: Record<string, string> = {
  caddy: "caddy",
  nginx: "nginx",
  certbot: "certbot",
  openssl: "openssl",
  sqlite3: "sqlite3",
  "postgresql-client": "pg_dump",
  "prometheus-node-exporter": "prometheus-node-exporter",
  "docker.io": "docker",
  "docker-compose": "docker-compose",
  nodejs: "node",
};

export const NODE_MINIMUM_MAJOR = 18;

/** The read-only probe: one line per fact, `key<TAB>value`. Changes nothing. */
export function probeScript(s: PrerequisiteSpec): string {
  const lines = [
    "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C",
    `if [ -r /etc/os-release ]; then . /etc/os-release; printf 'os\\t%s\\t%s\\t%s\\n' "$ID" "$ID_LIKE" "$VERSION_ID"; else printf 'os\\t\\t\\t\\n'; fi`,
    `if command -v apt-get >/dev/null 2>&1; then printf 'apt\\tyes\\n'; else printf 'apt\\tno\\n'; fi`,
    `if n=$(command -v ${shq(s.node.path)}); then printf 'node\\t%s\\n' "$("$n" --version 2>/dev/null | head -n1)"; else printf 'node\\t\\n'; fi`,
  ];
  for (const p of s.packages) {
    const cmd = p.command ? `command -v ${shq(p.command)} >/dev/null 2>&1 || ` : "";
    lines.push(`if ${cmd}dpkg-query -W -f='\${Status}' ${shq(p.name)} 2>/dev/null | grep -q 'install ok installed'; then printf 'pkg\\t%s\\tyes\\n' ${shq(p.name)}; else printf 'pkg\\t%s\\tno\\n' ${shq(p.name)}; fi`);
  }
  for (const b of s.binaries) {
    lines.push(`if [ -x ${shq(b.path)} ]; then printf 'bin\\t%s\\t%s\\n' ${shq(b.path)} "$(${[b.path, ...b.versionArgs].map(shq).join(" ")} 2>/dev/null | head -n1)"; else printf 'bin\\t%s\\t\\n' ${shq(b.path)}; fi`);
  }
  return lines.join("\n");
}

export interface ProbeFacts {
  os: { id: string; idLike: string; version: string };
  apt: boolean;
  /** The agent's Node: its `--version` ("" when absent). */
  node: string;
  packages: Record<string, boolean>;
  /** Path → first line of its version output; "" when the file is absent. */
  binaries: Record<string, string | null>;
}

export function parseProbe(stdout: string): ProbeFacts {
  const f: ProbeFacts = { os: { id: "", idLike: "", version: "" }, apt: false, node: "", packages: {}, binaries: {} };
  for (const line of stdout.split("\n")) {
    const [k, ...v] = line.split("\t");
    if (k === "os") f.os = { id: v[0] ?? "", idLike: v[1] ?? "", version: v[2] ?? "" };
    else if (k === "apt") f.apt = v[0] === "yes";
    else if (k === "node") f.node = (v[0] ?? "").trim();
    else if (k === "pkg" && v[0]) f.packages[v[0]] = v[1] === "yes";
    else if (k === "bin" && v[0]) f.binaries[v[0]] = v.length > 1 && v.slice(1).join("\t") !== "" ? v.slice(1).join("\t").trim() : null;
  }
  return f;
}

/** The first dotted release number in a version line ("1.98.10", "v0.29.2" -> "0.29.2"), or "". */
export function releaseIn(line: string): string {
  return /(\d+\.\d+(?:\.\d+)?)/.exec(line)?.[1] ?? "";
}

export interface PrerequisiteDecision {
  /** One message per problem the deploy cannot fix: host, what, expected, found, fix. */
  refusals: string[];
  /** Debian packages to install. */
  install: string[];
  /** Said, not refused: a pinned binary at another release (the fleet's `status` names it too). */
  warnings: string[];
}

const debianFamily = (f: ProbeFacts) => f.os.id === "debian" || f.os.id === "ubuntu" || f.os.idLike.split(/\s+/).some((x) => x === "debian" || x === "ubuntu");

/** What to refuse and what to install, from the probe. */
export function decide(s: PrerequisiteSpec, f: ProbeFacts): PrerequisiteDecision {
  const refusals: string[] = [];
  const install: string[] = [];
  const warnings: string[] = [];
  const at = `host ${s.host}`;
  if (!debianFamily(f) || !f.apt) {
    refusals.push(
      `${at}: expected a Debian-family system with apt-get (Debian 12 or 13, Ubuntu 24.04), found ${f.os.id ? `${f.os.id} ${f.os.version}`.trim() : "no /etc/os-release"}${f.apt ? "" : " without apt-get"}. meshfleet installs prerequisites only with apt; fix: deploy this host from a Debian or Ubuntu image, or install what it needs yourself and remove it from the fleet's agent hosts (agent: false)`,
    );
    return { refusals, install, warnings };
  }
  if (f.node === "") {
    // Debian's nodejs puts node at /usr/bin/node, which a bare "node" finds too.
    if (s.node.path === "node" || s.node.path === "/usr/bin/node") install.push("nodejs");
    else refusals.push(`${at}: the agent runs ${s.node.path}, which is missing, and meshfleet can install only Debian's nodejs (/usr/bin/node). Fix: install Node ${s.node.minimumMajor} or newer at ${s.node.path}, or leave the agent's node at its default ("node")`);
  } else {
    const major = Number(/^v?(\d+)/.exec(f.node)?.[1] ?? NaN);
    if (!(major >= s.node.minimumMajor)) {
      refusals.push(
        `${at}: the agent needs Node ${s.node.minimumMajor} or newer at ${s.node.path}, found ${f.node}. meshfleet does not replace a Node it finds; fix: upgrade it (Debian 12's nodejs is 18.19), or set the agent's node to a Node ${s.node.minimumMajor}+ on the host`,
      );
    }
  }
  for (const p of s.packages) if (f.packages[p.name] === false && !install.includes(p.name)) install.push(p.name);
  for (const b of s.binaries) {
    const line = f.binaries[b.path];
    if (line === null || line === undefined) {
      if (!b.deployed) refusals.push(`${at}: ${b.what} is missing at ${b.path} (${b.option}: ${b.version}). Fix: ${b.fix}`);
      continue;
    }
    const found = releaseIn(line);
    if (found !== b.version) {
      warnings.push(`${at}: ${b.what} at ${b.path} is ${found || JSON.stringify(line)}, the fleet pins ${b.version} (${b.option}); ${b.deployed ? "the deploy puts the pinned one there" : `fix: ${b.fix}, or set ${b.option} to ${found || "the release it runs"}`}`);
    }
  }
  return { refusals, install, warnings };
}

/** apt-get install of the missing packages; the package lists are refreshed only when a package has no candidate. */
export function installScript(packages: string[]): string {
  const pk = packages.map(shq).join(" ");
  // A fresh VPS's unattended-upgrades holds dpkg's lock for minutes after boot: wait for it. No
  // conffile prompt (stdin is closed): keep the host's own files.
  const apt = "apt-get -o DPkg::Lock::Timeout=600";
  const install = `${apt} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install -y -q --no-install-recommends ${pk}`;
  return [
    "export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    `${install} >/tmp/meshfleet-apt.log 2>&1 || { ${apt} update -q >>/tmp/meshfleet-apt.log 2>&1 && ${install} >>/tmp/meshfleet-apt.log 2>&1; } || { tail -n 15 /tmp/meshfleet-apt.log >&2; exit 1; }`,
  ].join("\n");
}
