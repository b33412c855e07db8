/**
 * The oidc-provider tool (lab/tools/oidc-provider, pinned in lab/versions.json)
 * and the OIDC drill's scripted browser, without a lab: the recipe that builds
 * a main of meshfleet's own against a pinned module, the schema that keeps such
 * a source inside lab/tools, and the form reading the browser relies on.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ldflags, plan } from "../../lab/tools/recipes.ts";
import { loadVersions, parseVersions, repoRoot } from "../../lab/tools/versions.ts";
import { parseForm } from "./oidc-browser.ts";

const ctx = { repoRoot, work: "/w", outBin: "/o", modCache: "/m", goproxy: "off" };
const tool = () => loadVersions().tools.find((t) => t.name === "oidc-provider")!;

describe("the oidc-provider tool", () => {
  it("is pinned to zitadel/oidc with a source folder that holds its main package", () => {
    const t = tool();
    expect(t).toMatchObject({ module: "github.com/zitadel/oidc/v3", moduleVersion: `v${t.version}`, source: "lab/tools/oidc-provider" });
    expect(existsSync(join(repoRoot, t.source!, "main.go"))).toBe(true);
  });

  it("builds through the wrapper module, stamped with its version", () => {
    const p = plan(tool(), ctx);
    expect(p.recipe).toBe("wrapper");
    expect(p.steps.map((s) => s.kind)).toEqual(["wrapper", "go"]);
    const compile = p.steps[1] as { args: string[]; cwd: string };
    expect(compile.args).toEqual(["build", "-trimpath", "-ldflags", `-X main.version=${tool().version}`, "-o", "/o/oidc-provider", "meshfleet.tools/oidc-provider"]);
    expect(ldflags(tool())).toBe(`-X main.version=${tool().version}`);
  });

  it("a source outside lab/tools is refused with the file and the option path", () => {
    const text = JSON.stringify({ go: { minimum: "1.25" }, tools: { x: { version: "1.0.0", module: "m", moduleVersion: "v1.0.0", source: "../elsewhere", binaries: {} } } });
    expect(() => parseVersions(text)).toThrow("lab/versions.json: tools.x.source: a folder under lab/tools");
  });
});

describe("the drill's browser reads forms", () => {
  it("the provider's login form: action and hidden id", () => {
    const html = `<form method="POST" action="/login/username" style="x"><input type="hidden" name="id" value="V2abc"><input id="username" name="username" autocomplete="username"><input id="password" name="password" type="password"></form>`;
    expect(parseForm(html)).toEqual({ action: "/login/username", fields: { id: "V2abc", username: "", password: "" } });
  });

  it("headscale's confirmation form: the CSRF field, entities decoded", () => {
    const html = `<p>x</p><form method="post" action="/register/confirm/abc?a=1&amp;b=2"><input type="hidden" name="headscale_register_confirm" value="tok-_1"><button type="submit">Confirm</button></form>`;
    expect(parseForm(html)).toEqual({ action: "/register/confirm/abc?a=1&b=2", fields: { headscale_register_confirm: "tok-_1" } });
  });

  it("a page without a form gives null", () => {
    expect(parseForm("<h1>Unauthorized</h1>")).toBeNull();
  });
});
