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
  /** The deploy installs it from this apt repository (AptRepository.name) when it is missing or at another release. */
  repository?: string;
}

/**
 * A vendor's apt repository a pinned binary comes from (tailscale.apt):
 * rendered on the host as its keyring, a sources.list.d entry naming the
 * keyring in signed-by, and an apt preferences pin of the package's version.
 */
export interface AptRepository {
  /**
   * The files' names: /usr/share/keyrings/<name>-archive-keyring.<gpg|asc>,
   * /etc/apt/sources.list.d/<name>.list, /etc/apt/preferences.d/<name>. The
   * same names as the vendor's install page, so a source set up by hand is
   * replaced, not duplicated (apt refuses one source with two signed-by).
   */
  name: string;
  url: string;
  /** "" = the host's VERSION_CODENAME. */
  suite: string;
  component: string;
  /** The signing keyring's bytes (base64): binary (.gpg) or armored (.asc). */
  keyring: { base64: string; armored: boolean };
  /** The package installed from it, at this version (apt `pkg=version`, held there by the pin). */
  package: string;
  version: string;
  /** Where it is configured, in messages: "hosts/home/vps.yaml: tailscale.apt". */
  origin: string;
  /** The option that pins the version ("tailscaleVersion"). */
  versionOption: string;
}

export interface PrerequisiteSpec {
  host: string;
  packages: NeededPackage[];
  /** The agent's runtime: the command the agent runs with (a name looked up on PATH, or a path). */
  node: { path: string; minimumMajor: number };
  binaries: PinnedBinary[];
  /** Vendor apt repositories that binaries come from (absent: none). */
  repositories?: AptRepository[];
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
    `if [ -r /etc/os-release ]; then . /etc/os-release; printf 'os\\t%s\\t%s\\t%s\\t%s\\n' "$ID" "$ID_LIKE" "$VERSION_ID" "$VERSION_CODENAME"; else printf 'os\\t\\t\\t\\t\\n'; fi`,
    `if command -v apt-get >/dev/null 2>&1; then printf 'apt\\tyes\\n'; else printf 'apt\\tno\\n'; fi`,
    `if n=$(command -v ${shq(s.node.path)}); then printf 'node\\t%s\\n' "$("$n" --version 2>/dev/null | head -n1)"; else printf 'node\\t\\n'; fi`,
  ];
  for (const p of s.packages) {
    const cmd = p.command ? `command -v ${shq(p.command)} >/dev/null 2>&1 || ` : "";
    lines.push(`if ${cmd}dpkg-query -W -f='\${Status}' ${shq(p.name)} 2>/dev/null | grep -q 'install ok installed'; then printf 'pkg\\t%s\\tyes\\n' ${shq(p.name)}; else printf 'pkg\\t%s\\tno\\n' ${shq(p.name)}; fi`);
  }
  // The vendor package's own version: a binary may say the release while the package is another build.
  for (const r of s.repositories ?? []) {
    lines.push(`printf 'debver\\t%s\\t%s\\n' ${shq(r.package)} "$(dpkg-query -W -f='\${Status}\\t\${Version}' ${shq(r.package)} 2>/dev/null | awk -F'\\t' '/install ok installed/ {print $2}')"`);
  }
  for (const b of s.binaries) {
    lines.push(`if [ -x ${shq(b.path)} ]; then printf 'bin\\t%s\\t%s\\n' ${shq(b.path)} "$(${[b.path, ...b.versionArgs].map(shq).join(" ")} 2>/dev/null | head -n1)"; else printf 'bin\\t%s\\t\\n' ${shq(b.path)}; fi`);
  }
  return lines.join("\n");
}

export interface ProbeFacts {
  os: { id: string; idLike: string; version: string; codename?: string };
  apt: boolean;
  /** The agent's Node: its `--version` ("" when absent). */
  node: string;
  packages: Record<string, boolean>;
  /** Path → first line of its version output; "" when the file is absent. */
  binaries: Record<string, string | null>;
  /** A vendor repository's package → its installed Debian version ("" when not installed). */
  debVersions?: Record<string, string>;
}

export function parseProbe(stdout: string): ProbeFacts {
  const f: ProbeFacts = { os: { id: "", idLike: "", version: "" }, apt: false, node: "", packages: {}, binaries: {} };
  for (const line of stdout.split("\n")) {
    const [k, ...v] = line.split("\t");
    if (k === "os") f.os = { id: v[0] ?? "", idLike: v[1] ?? "", version: v[2] ?? "", codename: v[3] ?? "" };
    else if (k === "apt") f.apt = v[0] === "yes";
    else if (k === "node") f.node = (v[0] ?? "").trim();
    else if (k === "pkg" && v[0]) f.packages[v[0]] = v[1] === "yes";
    else if (k === "debver" && v[0]) (f.debVersions ??= {})[v[0]] = (v[1] ?? "").trim();
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
  /** Vendor repositories to set up and install their pinned package from (a binary missing or at another release). */
  repositories: AptRepository[];
}

const debianFamily = (f: ProbeFacts) => f.os.id === "debian" || f.os.id === "ubuntu" || f.os.idLike.split(/\s+/).some((x) => x === "debian" || x === "ubuntu");

/** What to refuse and what to install, from the probe. */
export function decide(s: PrerequisiteSpec, f: ProbeFacts): PrerequisiteDecision {
  const refusals: string[] = [];
  const install: string[] = [];
  const warnings: string[] = [];
  const repositories: AptRepository[] = [];
  const at = `host ${s.host}`;
  if (!debianFamily(f) || !f.apt) {
    refusals.push(
      `${at}: expected a Debian-family system with apt-get (Debian 12 or 13, Ubuntu 24.04), found ${f.os.id ? `${f.os.id} ${f.os.version}`.trim() : "no /etc/os-release"}${f.apt ? "" : " without apt-get"}. meshfleet installs prerequisites only with apt; fix: deploy this host from a Debian or Ubuntu image, or install what it needs yourself and remove it from the fleet's agent hosts (agent: false)`,
    );
    return { refusals, install, warnings, repositories };
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
    const repo = b.repository ? s.repositories?.find((r) => r.name === b.repository) : undefined;
    // Installed from the repository unless both the package and the binary are at the pinned release
    // (a binary put there by hand, or another build under the pinned number, is replaced).
    if (repo && (releaseIn(line ?? "") !== b.version || (f.debVersions !== undefined && f.debVersions[repo.package] !== repo.version))) {
      if (!repo.suite && !f.os.codename)
        refusals.push(`${at}: ${repo.origin}: expected the host's release codename for the repository's suite, found no VERSION_CODENAME in /etc/os-release. Fix: set tailscale.apt.suite to the suite the repository uses for this release (e.g. bookworm)`);
      else if (!repositories.includes(repo)) repositories.push(repo);
      continue;
    }
    if (line === null || line === undefined) {
      if (!b.deployed) refusals.push(`${at}: ${b.what} is missing at ${b.path} (${b.option}: ${b.version}). Fix: ${b.fix}`);
      continue;
    }
    const found = releaseIn(line);
    if (found !== b.version) {
      warnings.push(`${at}: ${b.what} at ${b.path} is ${found || JSON.stringify(line)}, the fleet pins ${b.version} (${b.option}); ${b.deployed ? "the deploy puts the pinned one there" : `fix: ${b.fix}, or set ${b.option} to ${found || "the release it runs"}`}`);
    }
  }
  return { refusals, install, warnings, repositories };
}

/** The keyring's path on the host: .asc for an armored key (apt's signed-by tells them apart by the name). */
export const keyringPath = (r: AptRepository) => `/usr/share/keyrings/${r.name}-archive-keyring.${r.keyring.armored ? "asc" : "gpg"}`;
export const sourcesPath = (r: AptRepository) => `/etc/apt/sources.list.d/${r.name}.list`;
export const pinPath = (r: AptRepository) => `/etc/apt/preferences.d/${r.name}`;

/** The sources.list.d entry: one line, the keyring in signed-by (never apt's global trust). */
export function sourcesLine(r: AptRepository, codename: string): string {
  return `deb [signed-by=${keyringPath(r)}] ${r.url} ${r.suite || codename} ${r.component}`;
}

/**
 * The apt preferences pin: priority 1001 keeps the fleet's version through an
 * `apt upgrade` or unattended-upgrades, and lets the deploy go down to it.
 */
export function pinText(r: AptRepository): string {
  return `# meshfleet: ${r.package} stays at the fleet's ${r.versionOption} (${r.origin})\nPackage: ${r.package}\nPin: version ${r.version}\nPin-Priority: 1001\n`;
}

/** Exit codes of repositoryScript: what went wrong, for the message. */
export const REPO_EXIT = { update: 20, noVersion: 21, install: 22 } as const;

/**
 * Writes the repository's keyring, source and pin (idempotent: same bytes, same
 * files), refreshes that source's lists alone (the host's other sources may be
 * slow or unreachable: not this step's business), and installs the pinned
 * version. Exits REPO_EXIT.* with apt's own lines on stderr; on a missing
 * version, stderr's last line is `versions:` and what the repository offers.
 */
export function repositoryScript(r: AptRepository, codename: string, o: { install: boolean }): string {
  const apt = "apt-get -o DPkg::Lock::Timeout=600";
  const only = `-o Dir::Etc::sourcelist=${shq(sourcesPath(r))} -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0`;
  const log = `/tmp/meshfleet-apt-${r.name}.log`;
  const lines = [
    "export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "set -e",
    `umask 022; mkdir -p /usr/share/keyrings /etc/apt/sources.list.d /etc/apt/preferences.d`,
    // The other form's file is removed: two keyrings for one source would leave an old key trusted.
    `rm -f ${shq(`/usr/share/keyrings/${r.name}-archive-keyring.${r.keyring.armored ? "gpg" : "asc"}`)}`,
    `printf %s ${shq(r.keyring.base64)} | base64 -d > ${shq(keyringPath(r))}.new && mv ${shq(keyringPath(r))}.new ${shq(keyringPath(r))}`,
    `printf '%s\\n' ${shq(`# meshfleet: ${r.origin}`)} ${shq(sourcesLine(r, codename))} > ${shq(sourcesPath(r))}`,
    `printf %s ${shq(pinText(r))} > ${shq(pinPath(r))}`,
  ];
  if (o.install) {
    lines.push(
      "set +e",
      `${apt} ${only} update -q >${log} 2>&1; rc=$?`,
      // apt-get update exits 0 on some fetch and signature failures and says so with W:/E: lines.
      // A source apt cannot read would break the host's every later apt-get update (an unrelated package's
      // install too): what this step wrote is taken out again.
      `if [ $rc -ne 0 ] || grep -Eq '^(E:|W: GPG error|W: Failed to fetch|Err:)' ${log}; then grep -E '^(E|W|Err):' ${log} | tail -n 12 >&2; ${repositoryRemovalScript(r).split("\n").join("; ")}; exit ${REPO_EXIT.update}; fi`,
      `if ! apt-cache madison ${shq(r.package)} | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF ${shq(r.version)}; then echo versions: >&2; apt-cache madison ${shq(r.package)} | awk -F'|' '{gsub(/ /,"",$2); print $2}' | tr '\\n' ' ' >&2; exit ${REPO_EXIT.noVersion}; fi`,
      `${apt} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install -y -q --no-install-recommends --allow-downgrades ${shq(`${r.package}=${r.version}`)} >>${log} 2>&1 || { tail -n 15 ${log} >&2; exit ${REPO_EXIT.install}; }`,
    );
  }
  return lines.join("\n");
}

/**
 * Undoes repositoryScript for a repository the fleet no longer names: its pin
 * (which would hold the package at the old version for good), source and
 * keyring, each only when it carries meshfleet's marker line. The package
 * stays installed, as every package the deploy installed does.
 */
export function repositoryRemovalScript(r: Pick<AptRepository, "name">): string {
  const mine = (f: string) => `if grep -q '^# meshfleet: ' ${shq(f)} 2>/dev/null; then rm -f ${shq(f)}`;
  return [
    `${mine(`/etc/apt/preferences.d/${r.name}`)}; fi`,
    `${mine(`/etc/apt/sources.list.d/${r.name}.list`)} /usr/share/keyrings/${shq(r.name)}-archive-keyring.gpg /usr/share/keyrings/${shq(r.name)}-archive-keyring.asc; fi`,
  ].join("\n");
}

/** What a failed repositoryScript means, for the person deploying: host, option, expected, found, fix. */
export function repositoryFailure(host: string, r: AptRepository, codename: string, code: number, stderr: string): string {
  const at = `host ${host}: ${r.origin}`;
  const where = `${r.url} ${r.suite || codename} ${r.component}`;
  if (code === REPO_EXIT.update)
    return `${at}: apt could not read the repository ${where}: expected its lists signed by the key in tailscale.apt.keyring, found:\n${stderr.trim()}\nFix: if apt says NO_PUBKEY or BADSIG, the keyring is not the repository's signing key: fetch it again from the repository (its <codename>.noarmor.gpg) and check its fingerprint; otherwise check tailscale.apt.url, tailscale.apt.suite and that ${host} reaches the repository. Nothing was installed, and the source, pin and keyring were taken out again (a source apt cannot read breaks every apt-get update on the host).`;
  if (code === REPO_EXIT.noVersion) {
    const offered = stderr.split("versions:").pop()!.trim();
    return `${at}: expected ${where} to offer ${r.package} ${r.version} (${r.versionOption}), found ${offered ? `only ${offered.split(/\s+/).slice(0, 12).join(", ")}` : `no ${r.package} package there`}. Fix: set ${r.versionOption} in fleet.yaml to a version the repository offers, or point tailscale.apt.url at a repository that has ${r.version}. Nothing was installed.`;
  }
  return `${at}: apt-get install ${r.package}=${r.version} from ${where} failed (exit ${code}):\n${stderr.trim().slice(-1500)}\nFix: see /tmp/meshfleet-apt-${r.name}.log on ${host}; no host's generation was switched.`;
}

/** After installing from a repository: the binary must say the pinned release, else the deploy stops. */
export function pinnedAfterInstall(s: PrerequisiteSpec, f: ProbeFacts): string[] {
  const out: string[] = [];
  for (const b of s.binaries) {
    const r = b.repository ? s.repositories?.find((x) => x.name === b.repository) : undefined;
    if (!r) continue;
    const line = f.binaries[b.path];
    const found = releaseIn(line ?? "");
    const deb = f.debVersions?.[r.package];
    if (deb !== undefined && deb !== r.version)
      out.push(
        `host ${s.host}: ${r.origin}: installed ${r.package}=${r.version}, expected dpkg to list ${r.package} ${r.version} (${r.versionOption}), found ${deb || "it not installed"}. Fix: see /tmp/meshfleet-apt-${r.name}.log on ${s.host}; a hold (apt-mark showhold) or another pin in /etc/apt/preferences.d can keep another version`,
      );
    else if (found !== b.version)
      out.push(
        `host ${s.host}: ${r.origin}: installed ${r.package}=${r.version}, expected ${b.path} to report ${b.version} (${b.option}), found ${line === null || line === undefined ? "no file there" : found || JSON.stringify(line)}. Fix: the repository's ${r.package} ${r.version} holds another build: check tailscale.apt.url, or set ${b.option} to the release it ships`,
      );
  }
  return out;
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
