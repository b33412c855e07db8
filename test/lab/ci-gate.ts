/**
 * Test gates that cannot hide a missing prerequisite in CI. Outside CI a test
 * whose prerequisite (root, a tool, a lab boot) is missing is skipped and says
 * why; with CI set it fails instead, naming what is missing and how to get it,
 * so a green CI run means the real thing ran. `.ci/run` also fails on any skip.
 */

/** CI is set (and not "false"/"0"), or MESHFLEET_REQUIRE_TOOLS asks for the same. */
export function strict(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI !== undefined && env.CI !== "" && env.CI !== "false" && env.CI !== "0";
  return ci || !!env.MESHFLEET_REQUIRE_TOOLS;
}

/**
 * For `it.skipIf(...)` / `describe.skipIf(...)`: `missing` is what is lacking
 * ("root: ..."), or false/"" when everything is there. Returns whether to
 * skip; in CI throws instead, which fails the file with that message.
 */
export function skipUnlessCi(missing: string | false | null | undefined): boolean {
  if (!missing) return false;
  if (strict()) throw new Error(`CI: cannot skip: ${missing}`);
  console.warn(`skipping: ${missing}`);
  return true;
}

/** For a test that finds out at run time (`ctx.skip()`): skip outside CI, fail in CI. */
export function skipOrFail(ctx: { skip: (note?: string) => void }, missing: string): void {
  if (strict()) throw new Error(`CI: cannot skip: ${missing}`);
  ctx.skip(missing);
}

export const NEEDS_ROOT = "needs root (network namespaces, nft, systemd-nspawn): run the tests as root, as CI does";
export const isRoot = () => process.getuid?.() === 0;
