// meshfleet tools build|status: the Go-built tools the lab and deploys run with.
import { buildTools, toolsDir, toolsStatus, ToolsError, type Progress } from "../../lab/tools/index.ts";

const usage = `usage: meshfleet tools build [--force] [--only NAME[,NAME]] [--json]
       meshfleet tools status [--json]

Builds the pinned tools (lab/versions.json) from Go modules into
$MESHFLEET_TOOLS_DIR (default ~/.cache/meshfleet/tools)/<name>@<version>/bin.
A tool already cached, or on PATH at the pinned version, is used as is.

  build     build what is missing; progress on stderr
  status    list each tool, its version, where it is (cached, PATH, missing)
  --force   rebuild even what is cached or on PATH
  --only    only the named tools (headscale, tailscale, pulumi, ...)
  --json    machine-readable output on stdout
  --debug   show the cause of an error, not only its one-line summary
`;

const fmtTime = (ms: number) => {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
};

function progressLine(p: Progress): string {
  const head = `${p.tool} ${p.version}`;
  if (p.step === "cached") return `${head}: cached (${p.detail})`;
  if (p.step === "path") return `${head}: on PATH (${p.detail})`;
  return `${head}: ${p.step}${p.detail ? ` (${p.detail})` : ""} ${fmtTime(p.elapsedMs)}`;
}

async function status(json: boolean): Promise<number> {
  const all = toolsStatus();
  if (json) {
    process.stdout.write(`${JSON.stringify({ toolsDir: toolsDir(), tools: all }, null, 2)}\n`);
  } else {
    process.stdout.write(`tools dir: ${toolsDir()}\n`);
    for (const t of all) {
      const where = t.state === "missing" ? `missing${t.note ? ` (${t.note})` : ""}` : t.state;
      process.stdout.write(`${t.name.padEnd(24)} ${t.version.padEnd(9)} ${where}\n`);
      for (const b of t.binaries) if (b.path) process.stdout.write(`  ${b.name.padEnd(22)} ${b.path}\n`);
    }
  }
  return all.every((t) => t.state !== "missing") ? 0 : 1;
}

async function build(argv: string[], json: boolean): Promise<number> {
  const onlyAt = argv.indexOf("--only");
  const only = onlyAt >= 0 ? (argv[onlyAt + 1] ?? "").split(",").filter(Boolean) : undefined;
  const started = Date.now();
  const outcomes = await buildTools({
    force: argv.includes("--force"),
    only,
    onProgress: (p) => process.stderr.write(`${progressLine(p)}\n`),
  });
  const seconds = (Date.now() - started) / 1000;
  if (json) process.stdout.write(`${JSON.stringify({ seconds, tools: outcomes }, null, 2)}\n`);
  else {
    const built = outcomes.filter((o) => o.action === "built").length;
    process.stderr.write(`tools ready in ${seconds.toFixed(1)}s (${built} built, ${outcomes.length - built} already there)\n`);
  }
  return 0;
}

export const command = {
  name: "tools",
  summary: "build or list the pinned Go tools (headscale, tailscale, derper, the pulumi CLI)",
  usage,
  run: async (argv: string[]): Promise<number> => {
    const [sub, ...rest] = argv;
    const json = rest.includes("--json");
    if (!sub || sub === "--help" || sub === "-h" || rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(usage);
      return sub ? 0 : 2;
    }
    try {
      if (sub === "status") return await status(json);
      if (sub === "build") return await build(rest, json);
      process.stderr.write(`meshfleet tools: unknown subcommand ${sub}\n${usage}`);
      return 2;
    } catch (e) {
      if (e instanceof ToolsError && !argv.includes("--debug")) {
        process.stderr.write(`meshfleet tools: ${e.message}\n`);
        return 1;
      }
      throw e;
    }
  },
};
