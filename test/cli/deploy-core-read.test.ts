/**
 * A site stack whose core stack the backend does not hold: the engine fails
 * the StackReference's read with only `unknown stack "core"` before the
 * site's program sees an error (seen in the lab, test/lab/sites-lab.test.ts),
 * so `meshfleet up` says the site's core and the fix in its place.
 */
import { describe, expect, it } from "vitest";
import { rewriteCoreRead } from "../../cli/commands/deploy.ts";

const REF = "urn:pulumi:lab-home::meshfleet::pulumi:pulumi:StackReference::lab-home-core";

describe("rewriteCoreRead", () => {
  it("names the core stack and the fix for a StackReference to a stack the backend does not hold", () => {
    expect(rewriteCoreRead('unknown stack "lab-core"', REF)).toBe(
      'the core stack lab-core could not be read (unknown stack "lab-core"). Fix: deploy the core first (`meshfleet up --stack lab-core`), or set meshfleet:coreStack to its name on this backend (org/project/stack on a shared one)',
    );
    expect(rewriteCoreRead('reading the stack: unknown stack "acme/meshfleet/core"\nmore', REF)).toMatch(/^the core stack acme\/meshfleet\/core could not be read \(reading the stack: unknown stack "acme\/meshfleet\/core"\)\. Fix: /);
  });

  it("leaves every other message as it is: another resource's, or another error of the reference", () => {
    expect(rewriteCoreRead('unknown stack "lab-core"', "urn:pulumi:lab-home::meshfleet::meshfleet:host:Generation::lab-home-laptop")).toBe('unknown stack "lab-core"');
    expect(rewriteCoreRead('unknown stack "lab-core"', undefined)).toBe('unknown stack "lab-core"');
    expect(rewriteCoreRead("failed to decrypt", REF)).toBe("failed to decrypt");
  });
});
