/**
 * The provider's entry in plain JavaScript: loads the Pulumi SDK natively
 * (through tsx, every one of its CommonJS files would be transformed: about
 * 0.5 s of CPU per launch), then registers tsx's ESM loader for our own
 * TypeScript only and runs main.ts.
 */
import { createRequire } from "node:module";
import { register } from "tsx/esm/api";

createRequire(import.meta.url)("@pulumi/pulumi/provider/index.js");
register();
await import("./main.ts");
