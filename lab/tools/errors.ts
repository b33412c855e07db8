// One line a person can act on, from what `go` printed when a step failed.

/** The error class the CLI prints without a stack trace; `cause` keeps the detail for --debug. */
export class ToolsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ToolsError";
  }
}

const networkPattern =
  /dial tcp|no such host|connection refused|i\/o timeout|TLS handshake timeout|network is unreachable|proxyconnect|connection reset|Could not resolve host/;
const refusedPattern = /reading (\S+): (403 Forbidden|404 Not Found|410 Gone)/;

/** The most telling line of go's output: the last `go: ...` error, else the last non-empty line. */
export function lastErrorLine(output: string): string {
  const lines = output.split("\n").map((l) => l.trim()).filter(Boolean).filter((l) => !l.startsWith("go: downloading"));
  const goErr = [...lines].reverse().find((l) => /^go: |error|cannot|undefined:|: no required module/.test(l));
  return (goErr ?? lines.at(-1) ?? "(no output)").slice(0, 400);
}

export type FailureContext = {
  tool: string;
  version: string;
  command: string;
  exitCode: number | null;
  signal: string | null;
  output: string;
  goproxy: string;
  log: string;
};

export function describeFailure(f: FailureContext): string {
  const what = `${f.tool} ${f.version}`;
  const net = f.output.split("\n").find((l) => networkPattern.test(l));
  if (net) {
    return `building ${what}: the Go module proxy is unreachable (GOPROXY=${f.goproxy}): ${net.trim().slice(0, 300)}; check the network or set GOPROXY to a proxy you can reach, then rerun \`meshfleet tools build\``;
  }
  const refused = refusedPattern.exec(f.output);
  if (refused) {
    return `building ${what}: the Go module proxy refused ${refused[1]} (${refused[2]}); the pinned version in lab/versions.json may not be served by GOPROXY=${f.goproxy} (log: ${f.log})`;
  }
  if (/SECURITY ERROR|checksum mismatch/.test(f.output)) {
    return `building ${what}: a module checksum did not verify (${lastErrorLine(f.output)}); do not override it, check lab/versions.json goSum and GOPROXY (log: ${f.log})`;
  }
  const how = f.signal ? `was killed by ${f.signal}` : `exited ${f.exitCode}`;
  return `building ${what} failed: \`${f.command}\` ${how}: ${lastErrorLine(f.output)} (full log: ${f.log})`;
}

export function goMissing(): string {
  return "Go toolchain not found on PATH: the tools are built from Go modules; install Go (golang.org/dl, or /usr/local/go/bin on PATH) and rerun `meshfleet tools build`";
}

export function goTooOld(found: string, minimum: string): string {
  return `Go ${found} is too old to build the tools (lab/versions.json go.minimum is ${minimum}): install a newer Go and put it first on PATH`;
}
