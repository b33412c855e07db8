/**
 * Host and node names. A host's name is its file name (`gw.yaml` -> gw) and,
 * unless tailscale.hostname says otherwise, its node name in the tailnet and
 * its MagicDNS label; it also becomes part of paths, unit names and command
 * lines. So it must be one DNS label (RFC 1123: letters, digits, '-', at most
 * 63 characters, no leading or trailing '-').
 *
 * Non-ASCII names are refused rather than folded: a Cyrillic "а" looks like a
 * Latin "a" (UTS #39 calls them confusables), so two names that read the same
 * could name two nodes. Tailscale and headscale also lowercase names, so `GW`
 * and `gw` are one node: names are compared after case folding.
 */

/** Why `name` is not a DNS label, in words a person can act on; undefined when it is one. */
export function labelProblem(name: string, opts: { lowercase?: boolean } = {}): string | undefined {
  if (name === "") return "an empty name";
  const bad = firstBadChar(name);
  if (bad) return bad;
  if (name.length > 63) return `${name.length} characters (a DNS label has at most 63)`;
  if (name.startsWith("-") || name.endsWith("-")) return "a name that starts or ends with '-'";
  if (opts.lowercase && /[A-Z]/.test(name)) return "capital letters (names are lowercase: tailscale and headscale lowercase them)";
  return undefined;
}

function firstBadChar(name: string): string | undefined {
  for (const ch of name) {
    const cp = ch.codePointAt(0)!;
    if (/[A-Za-z0-9-]/.test(ch)) continue;
    const code = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
    if (cp === 0) return "a NUL byte (U+0000)";
    if (cp === 10 || cp === 13) return `a line break (${code})`;
    if (cp < 32 || (cp >= 0x7f && cp <= 0x9f)) return `a control character (${code})`;
    if (ch === "/" || ch === "\\") return "a path separator (a name is one label, not a path)";
    if (ch === ".") return name.includes("..") ? "'..' (a name is one label, not a path)" : "a '.' (a name is one DNS label; dots separate labels)";
    if (ch === "_") return "an underscore (not allowed in a DNS label)";
    if (/\s/u.test(ch)) return `whitespace (${code})`;
    if (cp > 127) return `the non-ASCII character ${JSON.stringify(ch)} (${code}); non-ASCII names are refused because look-alike letters (such as Cyrillic "а" for Latin "a") would make two names read the same`;
    return `the character ${JSON.stringify(ch)} (a DNS label has only letters, digits and '-')`;
  }
  return undefined;
}

/** A valid label close to `name`, to suggest in a fix (lowercased, other characters made '-'); undefined if nothing is left. */
export function suggestLabel(name: string): string | undefined {
  const s = name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return s || undefined;
}

/** The key two names collide on: case folded (after NFKC, so full-width letters fold too). */
export function foldName(name: string): string {
  return name.normalize("NFKC").toLowerCase();
}

export interface NamedThing {
  name: string;
  file: string;
  path: string;
}

/** Pairs of things whose names differ but fold to the same key (`GW` and `gw`); exact duplicates are the caller's. */
export function caseCollisions(things: NamedThing[]): { first: NamedThing; second: NamedThing }[] {
  const byKey = new Map<string, NamedThing>();
  const out: { first: NamedThing; second: NamedThing }[] = [];
  for (const t of things) {
    const k = foldName(t.name);
    const prev = byKey.get(k);
    if (!prev) byKey.set(k, t);
    else if (prev.name !== t.name) out.push({ first: prev, second: t });
  }
  return out;
}
