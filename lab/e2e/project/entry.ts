/** The repo's Pulumi program, default export only (see Pulumi.yaml here); paths in it are the repo's. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

process.chdir(join(dirname(fileURLToPath(import.meta.url)), "..", "..", ".."));
const { default: program } = await import("../../../index.ts");
export default program;
