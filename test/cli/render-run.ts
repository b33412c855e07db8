/** `meshfleet render --hosts-dir hosts/home --out DIR` in this process, its summary line kept off the test output; the command's exit code. */
import { vi } from "vitest";
import { command as render } from "../../cli/commands/render.ts";

export async function renderHome(out: string): Promise<number> {
  const log = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    return await render.run(["--hosts-dir", "hosts/home", "--out", out]);
  } finally {
    log.mockRestore();
  }
}
